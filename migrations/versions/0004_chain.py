"""Nodes keep what the chain probe saw of them.

``nodes.chain_*`` hold the last facts of the chain probe (JSON-RPC to the node's pod): whether
it answers, block number, peer count, syncing, enode, client version, raft role, ID and
membership, IBFT validators and stall, and the container run (``chain_run``) they belong to.
All are empty until the first probe.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ('chain_probed_at', sa.DateTime(timezone=True)),
    ('chain_run', sa.String(length=300)),
    ('chain_answering', sa.Boolean()),
    ('chain_error', sa.Text()),
    ('chain_block_number', sa.BigInteger()),
    ('chain_peer_count', sa.Integer()),
    ('chain_syncing', sa.Boolean()),
    ('chain_enode', sa.Text()),
    ('chain_client_version', sa.Text()),
    ('chain_raft_role', sa.String(length=32)),
    ('chain_raft_id', sa.Integer()),
    ('chain_raft_member', sa.Boolean()),
    ('chain_validators', sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.add_column(
            sa.Column('chain_stalled', sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        batch.drop_column('chain_stalled')
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
