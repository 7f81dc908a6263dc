"""Tenants and API tokens; networks and operations belong to a tenant.

Rows that exist already (a single-tenant installation) are given to a tenant named "local"
whose namespace is QAAS_NAMESPACE, where their node objects already are (``default`` when it is
unset); an operator can rename it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:17:43.849919
"""

from collections.abc import Sequence

import datetime
import uuid

import sqlalchemy as sa
from alembic import op

from app.config import load_settings


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tenants',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('namespace', sa.String(length=63), nullable=False),
    sa.Column('max_networks', sa.Integer(), nullable=False),
    sa.Column('max_nodes', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('name', name=op.f('uq_tenants_name')),
    sa.UniqueConstraint('namespace', name=op.f('uq_tenants_namespace'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.Enum('ADMIN', 'MEMBER', 'VIEWER', name='role', native_enum=False, length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('hint', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_tokens_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('secret_hash', name=op.f('uq_api_tokens_secret_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_tenant_id'), ['tenant_id'], unique=False)

    local = _adopt_existing_rows()
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tenant_id', sa.String(length=36), nullable=False,
                                      server_default=local or ''))
        batch_op.drop_constraint(batch_op.f('uq_networks_name'), type_='unique')
        batch_op.create_index(batch_op.f('ix_networks_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_unique_constraint('uq_networks_tenant_id_name', ['tenant_id', 'name'])
        batch_op.create_foreign_key(batch_op.f('fk_networks_tenant_id_tenants'), 'tenants', ['tenant_id'], ['id'], ondelete='RESTRICT')

    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tenant_id', sa.String(length=36), nullable=False,
                                      server_default=local or ''))
        batch_op.create_index(batch_op.f('ix_operations_tenant_id'), ['tenant_id'], unique=False)
    # The defaults only filled the existing rows; new rows always name their tenant.
    for table in ('networks', 'operations'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('tenant_id', server_default=None)


def _adopt_existing_rows() -> str | None:
    """Create the "local" tenant if there are rows to give it; returns its id."""
    bind = op.get_bind()
    existing = bind.execute(sa.text('SELECT COUNT(*) FROM networks')).scalar()
    existing = (existing or 0) + (bind.execute(sa.text('SELECT COUNT(*) FROM operations')).scalar() or 0)
    if not existing:
        return None
    tenant_id = str(uuid.uuid4())
    # The first tenant uses the configured namespace, as app.services.tenancy.namespace_for
    # gives it: that is where this installation's node objects are. When QAAS_NAMESPACE is
    # unset, the fallback is "default", the same as namespace_for's (not the pod's own
    # namespace, which only the cluster connection knows).
    namespace = load_settings().namespace or 'default'
    bind.execute(
        sa.text(
            'INSERT INTO tenants (id, name, namespace, max_networks, max_nodes, created_at) '
            "VALUES (:id, 'local', :namespace, 100, 500, :now)"
        ),
        {'id': tenant_id, 'namespace': namespace, 'now': datetime.datetime.now(datetime.UTC)},
    )
    return tenant_id



def downgrade() -> None:
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operations_tenant_id'))
        batch_op.drop_column('tenant_id')

    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_networks_tenant_id_tenants'), type_='foreignkey')
        batch_op.drop_constraint('uq_networks_tenant_id_name', type_='unique')
        batch_op.drop_index(batch_op.f('ix_networks_tenant_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_networks_name'), ['name'])
        batch_op.drop_column('tenant_id')

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_tenant_id'))

    op.drop_table('api_tokens')
    op.drop_table('tenants')
