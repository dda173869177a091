"""credentials: where rotation delivers the successor, and the hook run after it

Revision ID: 0004_credential_delivery
Revises: 0001
Create Date: 2026-12-01 22:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004_credential_delivery'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials') as batch:
        batch.add_column(sa.Column('delivery_target', sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column('delivery_hook', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('credentials') as batch:
        batch.drop_column('delivery_hook')
        batch.drop_column('delivery_target')
