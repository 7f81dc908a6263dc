"""Nodes say why the reconciler is retrying them.

``nodes.retry_reason`` holds the last error the reconciler met making the node's objects (a
refused or failed API call) while it keeps trying; the start deadline turns it into FAILED.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        batch.add_column(sa.Column('retry_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        batch.drop_column('retry_reason')
