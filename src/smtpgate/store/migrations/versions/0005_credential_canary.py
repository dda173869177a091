"""credentials: canary credentials, planted to be found, never to log in

Revision ID: 0005_credential_canary
Revises: 0004_credential_delivery
Create Date: 2026-12-01 23:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005_credential_canary'
down_revision = '0004_credential_delivery'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials') as batch:
        batch.add_column(sa.Column('canary', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('credentials') as batch:
        batch.drop_column('canary')
