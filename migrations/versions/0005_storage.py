"""Networks say how much storage, of which class, each of their nodes' data claims gets.

``networks.storage_size`` is a Kubernetes quantity (``1Gi``) and ``networks.storage_class`` a
StorageClass name, empty for the cluster's default class. Networks made before this revision
have NULL in both: their nodes use the installation's settings (``QAAS_NODE_STORAGE_SIZE``,
``QAAS_NODE_STORAGE_CLASS``) when their StatefulSets are made.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('networks') as batch:
        batch.add_column(sa.Column('storage_size', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('storage_class', sa.String(length=253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('networks') as batch:
        batch.drop_column('storage_class')
        batch.drop_column('storage_size')
