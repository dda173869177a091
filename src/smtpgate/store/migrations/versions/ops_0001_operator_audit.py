"""operations: the operator audit trail and operator API tokens

Revision ID: ops_0001
Revises: 0001
Create Date: 2026-12-01 22:30:00
"""
import sqlalchemy as sa
from alembic import op

import smtpgate.store.models

revision = 'ops_0001'
down_revision = '0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('operator_events',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('time', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('face', sa.String(length=16), nullable=False),
    sa.Column('remote_ip', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=320), nullable=False),
    sa.Column('outcome', sa.String(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('operator_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operator_events_time'), ['time'], unique=False)
        batch_op.create_index('ix_operator_events_actor', ['actor', 'id'], unique=False)
    op.create_table('api_tokens',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('allowed_networks', sa.JSON(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(length=200), nullable=False),
    sa.Column('last_used_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('last_used_ip', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('secret_hash'),
    )


def downgrade() -> None:
    op.drop_table('api_tokens')
    with op.batch_alter_table('operator_events', schema=None) as batch_op:
        batch_op.drop_index('ix_operator_events_actor')
        batch_op.drop_index(batch_op.f('ix_operator_events_time'))
    op.drop_table('operator_events')
