"""console: invitations (one-time links to set a password) and account policies (console role, second factor)

Revision ID: console_0001
Revises: 0001
Create Date: 2026-12-06 09:45:00
"""
import sqlalchemy as sa
from alembic import op

import smtpgate.store.models

revision = 'console_0001'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('invites',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('used_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('used_ip', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_hash'),
    )
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invites_account_id'), ['account_id'], unique=False)
    op.create_table('account_policies',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('require_second_factor', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id'),
    )


def downgrade() -> None:
    op.drop_table('account_policies')
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invites_account_id'))
    op.drop_table('invites')
