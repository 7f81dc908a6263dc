"""Node deletion under raft: ``nodes.delete_force`` (nodeDelete's ``force``: no raft step),
``nodes.raft_removed`` (the raft leader removed the node's raft ID) and ``nodes.delete_deadline``
(until when the raft step is retried). Existing rows: no force, not removed, no deadline yet.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column("delete_force", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("raft_removed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("delete_deadline", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("delete_deadline")
        batch.drop_column("raft_removed")
        batch.drop_column("delete_force")
