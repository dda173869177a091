"""accounts and credentials

Revision ID: 0001
Revises:
Create Date: 2026-11-28 03:35:17.348755
"""
import sqlalchemy as sa
from alembic import op

import smtpgate.store.models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('login', sa.String(length=320), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('require_app_passwords', sa.Boolean(), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('login')
    )
    op.create_table('credentials',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=False),
    sa.Column('lookup_key', sa.String(length=64), nullable=True),
    sa.Column('allowed_senders', sa.JSON(), nullable=False),
    sa.Column('allowed_networks', sa.JSON(), nullable=False),
    sa.Column('max_per_hour', sa.Integer(), nullable=True),
    sa.Column('max_per_day', sa.Integer(), nullable=True),
    sa.Column('max_rcpt_per_hour', sa.Integer(), nullable=True),
    sa.Column('max_rcpt_per_day', sa.Integer(), nullable=True),
    sa.Column('rotated_from', sa.String(length=40), nullable=True),
    sa.Column('replaced_by', sa.String(length=40), nullable=True),
    sa.Column('last_used_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('last_used_ip', sa.String(length=64), nullable=True),
    sa.Column('use_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lookup_key')
    )
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credentials_account_id'), ['account_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credentials_account_id'))

    op.drop_table('credentials')
    op.drop_table('accounts')
