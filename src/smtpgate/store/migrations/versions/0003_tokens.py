"""tokens: service accounts, issued and revoked OAuth tokens, SCRAM verifiers

Revision ID: 0003_tokens
Revises: 0001
Create Date: 2026-11-30 09:00:00
"""
import sqlalchemy as sa
from alembic import op

import smtpgate.store.models

revision = '0003_tokens'
down_revision = '0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('service_accounts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('login', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('allowed_senders', sa.JSON(), nullable=False),
    sa.Column('allowed_networks', sa.JSON(), nullable=False),
    sa.Column('max_per_hour', sa.Integer(), nullable=True),
    sa.Column('max_per_day', sa.Integer(), nullable=True),
    sa.Column('max_rcpt_per_hour', sa.Integer(), nullable=True),
    sa.Column('max_rcpt_per_day', sa.Integer(), nullable=True),
    sa.Column('token_lifetime', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(length=200), nullable=False),
    sa.Column('last_issued_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('last_used_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('last_used_ip', sa.String(length=64), nullable=True),
    sa.Column('use_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('login')
    )
    op.create_table('oauth_tokens',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('service_account_id', sa.String(length=40), nullable=True),
    sa.Column('subject', sa.String(length=320), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('issued_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('expires_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('issued_via', sa.String(length=16), nullable=False),
    sa.Column('revoked_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['service_account_id'], ['service_accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issuer', 'jti', name='uq_oauth_tokens_issuer_jti')
    )
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_tokens_service_account_id'), ['service_account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_tokens_expires_at'), ['expires_at'], unique=False)

    op.create_table('scram_verifiers',
    sa.Column('credential_id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=64), nullable=False),
    sa.Column('iterations', sa.Integer(), nullable=False),
    sa.Column('stored_key', sa.LargeBinary(length=64), nullable=False),
    sa.Column('server_key', sa.LargeBinary(length=64), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('credential_id')
    )
    with op.batch_alter_table('scram_verifiers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scram_verifiers_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('scram_verifiers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scram_verifiers_account_id'))
    op.drop_table('scram_verifiers')
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_tokens_expires_at'))
        batch_op.drop_index(batch_op.f('ix_oauth_tokens_service_account_id'))
    op.drop_table('oauth_tokens')
    op.drop_table('service_accounts')
