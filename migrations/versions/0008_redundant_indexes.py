"""Drop two indexes that a unique constraint already provides: ``ix_networks_tenant_id`` (the
leading column of ``uq_networks_tenant_id_name``) and ``ix_nodes_network_id`` (of
``uq_nodes_network_id_name``). Lookups by tenant or by network use the constraints' indexes;
every insert and delete of a network or node maintained one index fewer each.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_networks_tenant_id", table_name="networks")
    op.drop_index("ix_nodes_network_id", table_name="nodes")


def downgrade() -> None:
    op.create_index("ix_nodes_network_id", "nodes", ["network_id"])
    op.create_index("ix_networks_tenant_id", "networks", ["tenant_id"])
