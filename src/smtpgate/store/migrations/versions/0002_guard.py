"""guard and audit: audit events, alerts, ban records

Revision ID: 0002_guard
Revises: 0001
Create Date: 2026-11-29 10:00:00
"""
import sqlalchemy as sa
from alembic import op

import smtpgate.store.models

revision = '0002_guard'
down_revision = '0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('time', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('listener', sa.String(length=32), nullable=False),
    sa.Column('remote_ip', sa.String(length=64), nullable=False),
    sa.Column('network', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('tls', sa.String(length=16), nullable=False),
    sa.Column('mechanism', sa.String(length=32), nullable=False),
    sa.Column('login', sa.String(length=320), nullable=False),
    sa.Column('account', sa.String(length=320), nullable=False),
    sa.Column('credential_id', sa.String(length=40), nullable=True),
    sa.Column('result', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_time', ['time'], unique=False)
        batch_op.create_index('ix_audit_events_credential', ['credential_id', 'kind', 'result', 'network'], unique=False)
        batch_op.create_index('ix_audit_events_account', ['account', 'kind', 'result', 'source'], unique=False)
        batch_op.create_index('ix_audit_events_source', ['source', 'kind', 'result'], unique=False)

    op.create_table('audit_alerts',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('time', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('login', sa.String(length=320), nullable=False),
    sa.Column('credential_id', sa.String(length=40), nullable=True),
    sa.Column('remote_ip', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('webhook', sa.String(length=16), nullable=False),
    sa.Column('email', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('audit_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_audit_alerts_time', ['time'], unique=False)

    op.create_table('guard_bans',
    sa.Column('network', sa.String(length=64), nullable=False),
    sa.Column('since', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('until', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('strikes', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('lifted_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('lifted_by', sa.String(length=200), nullable=False),
    sa.Column('changed_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('network')
    )
    with op.batch_alter_table('guard_bans', schema=None) as batch_op:
        batch_op.create_index('ix_guard_bans_changed_at', ['changed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('guard_bans', schema=None) as batch_op:
        batch_op.drop_index('ix_guard_bans_changed_at')
    op.drop_table('guard_bans')
    with op.batch_alter_table('audit_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_alerts_time')
    op.drop_table('audit_alerts')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_source')
        batch_op.drop_index('ix_audit_events_account')
        batch_op.drop_index('ix_audit_events_credential')
        batch_op.drop_index('ix_audit_events_time')
    op.drop_table('audit_events')
