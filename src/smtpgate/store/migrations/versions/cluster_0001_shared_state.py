"""cluster: the shared queue and capture store, queue-wide values, nodes, sealed secrets

Revision ID: cluster_0001
Revises: 0001
Create Date: 2026-12-06 09:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'cluster_0001'
down_revision = '0001'
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('cluster_messages',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('box', sa.String(length=16), nullable=False),
    sa.Column('received_at', _WHEN, nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=True),
    sa.Column('claim_node', sa.String(length=200), nullable=True),
    sa.Column('claim_token', sa.String(length=40), nullable=True),
    sa.Column('lease_until', _WHEN, nullable=True),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_cluster_messages_box', 'cluster_messages', ['box', 'received_at', 'id'])
    op.create_table('cluster_message_chunks',
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['cluster_messages.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', 'seq'),
    )
    op.create_table('cluster_values',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('name'),
    )
    op.create_table('cluster_nodes',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('started_at', _WHEN, nullable=False),
    sa.Column('heartbeat_at', _WHEN, nullable=False),
    sa.Column('connections', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', 'pid'),
    )
    op.create_table('cluster_secrets',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('updated_at', _WHEN, nullable=False),
    sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('cluster_secrets')
    op.drop_table('cluster_nodes')
    op.drop_table('cluster_values')
    op.drop_table('cluster_message_chunks')
    op.drop_index('ix_cluster_messages_box', table_name='cluster_messages')
    op.drop_table('cluster_messages')
