"""web console: owners' sessions, second factors, recovery codes

Revision ID: portal_0001
Revises: 0001
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import op

import smtpgate.store.models

revision = 'portal_0001'
down_revision = '0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _account() -> sa.ForeignKey:
    return sa.ForeignKey('accounts.id', ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('web_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), _account(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('last_seen_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('remote_ip', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=200), nullable=False),
    sa.Column('challenge', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_web_sessions_account', 'web_sessions', ['account_id'])
    op.create_table('second_factors',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', sa.Integer(), _account(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('secret', sa.LargeBinary(), nullable=False),
    sa.Column('credential_id', sa.String(length=1400), nullable=True),
    sa.Column('sign_count', sa.BigInteger(), nullable=False),
    sa.Column('transports', sa.Text(), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('last_used_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('credential_id'),
    )
    op.create_index('ix_second_factors_account', 'second_factors', ['account_id'])
    op.create_table('recovery_codes',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', sa.Integer(), _account(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('used_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_recovery_codes_account', 'recovery_codes', ['account_id'])
    op.create_table('two_factor_state',
    sa.Column('account_id', sa.Integer(), _account(), nullable=False),
    sa.Column('required_before', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('account_id'),
    )


def downgrade() -> None:
    op.drop_table('two_factor_state')
    op.drop_index('ix_recovery_codes_account', table_name='recovery_codes')
    op.drop_table('recovery_codes')
    op.drop_index('ix_second_factors_account', table_name='second_factors')
    op.drop_table('second_factors')
    op.drop_index('ix_web_sessions_account', table_name='web_sessions')
    op.drop_table('web_sessions')
