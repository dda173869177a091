"""incidents: one row per incident, what it contained and how it ended

Revision ID: incident_0001
Revises: 0001
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import op

import smtpgate.store.models

revision = 'incident_0001'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('incidents',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('opened_at', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('opened_by', sa.String(length=200), nullable=False),
    sa.Column('subject_kind', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=320), nullable=False),
    sa.Column('account', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('window_start', smtpgate.store.models.UTCDateTime(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('contained', sa.JSON(), nullable=False),
    sa.Column('closed_at', smtpgate.store.models.UTCDateTime(), nullable=True),
    sa.Column('closed_by', sa.String(length=200), nullable=False),
    sa.Column('resolution', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incidents_opened_at'), ['opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_incidents_account'), ['account'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incidents_account'))
        batch_op.drop_index(batch_op.f('ix_incidents_opened_at'))
    op.drop_table('incidents')
