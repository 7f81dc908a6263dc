"""Networks, nodes, operations, node status history.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 05:51:48.155632
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('networks',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('consensus', sa.Enum('RAFT', 'IBFT', name='consensus', native_enum=False, length=32), nullable=False),
    sa.Column('external_coordinator_ip', sa.String(length=45), nullable=True),
    sa.Column('desired', sa.Enum('PRESENT', 'ABSENT', name='desired', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_networks')),
    sa.UniqueConstraint('name', name=op.f('uq_networks_name'))
    )
    op.create_table('operations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.Enum('NETWORK_CREATE', 'NETWORK_JOIN', 'NODE_ADD', 'NODE_DELETE', 'NETWORK_DELETE', name='operation_kind', native_enum=False, length=32), nullable=False),
    sa.Column('state', sa.Enum('PENDING', 'PROVISIONING', 'STARTING', 'DELETING', 'SUCCEEDED', 'FAILED', name='operation_state', native_enum=False, length=32), nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=True),
    sa.Column('node_id', sa.String(length=36), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operations'))
    )
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operations_network_id'), ['network_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_operations_node_id'), ['node_id'], unique=False)

    op.create_table('nodes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('role', sa.Enum('COORDINATOR', 'PEER', name='node_role', native_enum=False, length=32), nullable=False),
    sa.Column('desired', sa.Enum('PRESENT', 'ABSENT', name='desired', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('start_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('service_ip', sa.String(length=45), nullable=True),
    sa.Column('has_service', sa.Boolean(), nullable=False),
    sa.Column('has_deployment', sa.Boolean(), nullable=False),
    sa.Column('reconcile_error', sa.Text(), nullable=True),
    sa.Column('pod_name', sa.String(length=253), nullable=True),
    sa.Column('pod_phase', sa.String(length=32), nullable=True),
    sa.Column('pod_ready', sa.Boolean(), nullable=False),
    sa.Column('restart_count', sa.Integer(), nullable=False),
    sa.Column('pod_reason', sa.String(length=128), nullable=True),
    sa.Column('pod_message', sa.Text(), nullable=True),
    sa.Column('pod_ip', sa.String(length=45), nullable=True),
    sa.Column('pod_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('PENDING', 'PROVISIONING', 'STARTING', 'RUNNING', 'FAILED', 'DELETING', name='node_status', native_enum=False, length=32), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['networks.id'], name=op.f('fk_nodes_network_id_networks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes')),
    sa.UniqueConstraint('network_id', 'name', name='uq_nodes_network_id_name')
    )
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nodes_network_id'), ['network_id'], unique=False)

    op.create_table('node_status_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('node_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.Enum('PENDING', 'PROVISIONING', 'STARTING', 'RUNNING', 'FAILED', 'DELETING', name='node_status', native_enum=False, length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_node_status_changes_node_id_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_node_status_changes'))
    )
    with op.batch_alter_table('node_status_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_node_status_changes_node_id'), ['node_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('node_status_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_node_status_changes_node_id'))

    op.drop_table('node_status_changes')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_network_id'))

    op.drop_table('nodes')
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operations_node_id'))
        batch_op.drop_index(batch_op.f('ix_operations_network_id'))

    op.drop_table('operations')
    op.drop_table('networks')

