"""How many networks and nodes each tenant has, kept on the tenant's row
(``tenants.network_count``, ``tenants.node_count``): a mutation checks the tenant's limits by
reading them instead of counting its rows, which cost time in proportion to the rows. Existing
tenants get their counts now.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("network_count", sa.Integer(), nullable=False,
                                   server_default="0"))  # fmt: skip
        batch.add_column(sa.Column("node_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE tenants SET "
        "network_count = (SELECT count(*) FROM networks WHERE networks.tenant_id = tenants.id), "
        "node_count = (SELECT count(*) FROM nodes JOIN networks ON networks.id = nodes.network_id "
        "WHERE networks.tenant_id = tenants.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("node_count")
        batch.drop_column("network_count")
