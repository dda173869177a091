"""credentials: devices on the legacy listener (allowed recipients, how they authenticate, their TLS)

Revision ID: 0006_devices
Revises: 0005_credential_canary
Create Date: 2026-12-01 23:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_devices'
down_revision = '0005_credential_canary'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials') as batch:
        batch.add_column(sa.Column('allowed_recipients', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('legacy_auth', sa.String(length=10), nullable=True))
        batch.add_column(sa.Column('legacy_tls', sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('credentials') as batch:
        batch.drop_column('legacy_tls')
        batch.drop_column('legacy_auth')
        batch.drop_column('allowed_recipients')
