"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbound_seen',
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('message_id', sa.String(length=128), nullable=False),
    sa.Column('seen_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('instance_id', 'message_id', name=op.f('pk_inbound_seen'))
    )
    op.create_table('instances',
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('webhook_events', sa.Text(), server_default='[]', nullable=False),
    sa.Column('webhook_secret', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=20), server_default='initializing', nullable=False),
    sa.Column('state_since', sa.BigInteger(), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=True),
    sa.Column('restricted_until', sa.BigInteger(), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('push_name', sa.Text(), nullable=True),
    sa.Column('limit_per_minute', sa.Integer(), nullable=True),
    sa.Column('limit_per_hour', sa.Integer(), nullable=True),
    sa.Column('send_interval_ms', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("state IN ('initializing', 'connecting', 'needs_qr', 'ready', 'disconnected', 'restricted', 'error', 'logged_out', 'stopped')", name=op.f('ck_instances_state_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instances'))
    )
    op.create_table('polls',
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('message_id', sa.String(length=128), nullable=False),
    sa.Column('queue_id', sa.String(length=40), nullable=False),
    sa.Column('chat_id', sa.String(length=120), nullable=False),
    sa.Column('idempotency_key', sa.String(length=220), nullable=False),
    sa.Column('caption', sa.Text(), nullable=False),
    sa.Column('options', sa.Text(), nullable=False),
    sa.Column('multiple', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('instance_id', 'message_id', name=op.f('pk_polls'))
    )
    op.create_table('restarts',
    sa.Column('id', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'), autoincrement=True, nullable=False),
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('at', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_restarts'))
    )
    with op.batch_alter_table('restarts', schema=None) as batch_op:
        batch_op.create_index('ix_restarts_instance_at', ['instance_id', 'at'], unique=False)

    op.create_table('send_log',
    sa.Column('id', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'), autoincrement=True, nullable=False),
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('at', sa.BigInteger(), nullable=False),
    sa.Column('queue_id', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_log'))
    )
    with op.batch_alter_table('send_log', schema=None) as batch_op:
        batch_op.create_index('ix_send_log_instance_at', ['instance_id', 'at'], unique=False)

    op.create_table('transitions',
    sa.Column('id', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'), autoincrement=True, nullable=False),
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('at', sa.BigInteger(), nullable=False),
    sa.Column('from_state', sa.String(length=20), nullable=False),
    sa.Column('to_state', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transitions'))
    )
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.create_index('ix_transitions_instance_at', ['instance_id', 'at'], unique=False)

    op.create_table('votes',
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('poll_message_id', sa.String(length=128), nullable=False),
    sa.Column('voter', sa.String(length=120), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.Column('selected', sa.Text(), nullable=False),
    sa.Column('voter_alt', sa.String(length=120), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('instance_id', 'poll_message_id', 'voter', name=op.f('pk_votes'))
    )
    op.create_table('webhook_events',
    sa.Column('seq', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('delivered_at', sa.BigInteger(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'dead')", name=op.f('ck_webhook_events_status_known')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_webhook_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_webhook_events_event_id'))
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_events_pending', ['instance_id', 'status', 'seq'], unique=False)

    op.create_table('outbox',
    sa.Column('seq', sa.Integer().with_variant(sa.BigInteger(), 'postgresql'), autoincrement=True, nullable=False),
    sa.Column('queue_id', sa.String(length=40), nullable=False),
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('idempotency_key', sa.String(length=220), nullable=False),
    sa.Column('key_source', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('chat_id', sa.String(length=120), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('handed_over_at', sa.BigInteger(), nullable=True),
    sa.Column('sent_at', sa.BigInteger(), nullable=True),
    sa.Column('message_id', sa.String(length=128), nullable=True),
    sa.Column('ack', sa.String(length=12), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('error_reason', sa.String(length=40), nullable=True),
    sa.CheckConstraint("kind IN ('text', 'poll')", name=op.f('ck_outbox_kind_known')),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed', 'canceled', 'uncertain')", name=op.f('ck_outbox_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbox_attempts_non_negative')),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_outbox_instance_id_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_outbox')),
    sa.UniqueConstraint('instance_id', 'idempotency_key', name='uq_outbox_instance_key'),
    sa.UniqueConstraint('queue_id', name=op.f('uq_outbox_queue_id'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_claim', ['instance_id', 'status', 'next_attempt_at', 'seq'], unique=False)
        batch_op.create_index('ix_outbox_created', ['created_at'], unique=False)
        batch_op.create_index('ix_outbox_message_id', ['instance_id', 'message_id'], unique=False)
        batch_op.create_index('uq_outbox_one_sending', ['instance_id'], unique=True, sqlite_where=sa.text("status = 'sending'"), postgresql_where=sa.text("status = 'sending'"))



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('uq_outbox_one_sending', sqlite_where=sa.text("status = 'sending'"), postgresql_where=sa.text("status = 'sending'"))
        batch_op.drop_index('ix_outbox_message_id')
        batch_op.drop_index('ix_outbox_created')
        batch_op.drop_index('ix_outbox_claim')

    op.drop_table('outbox')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_pending')

    op.drop_table('webhook_events')
    op.drop_table('votes')
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.drop_index('ix_transitions_instance_at')

    op.drop_table('transitions')
    with op.batch_alter_table('send_log', schema=None) as batch_op:
        batch_op.drop_index('ix_send_log_instance_at')

    op.drop_table('send_log')
    with op.batch_alter_table('restarts', schema=None) as batch_op:
        batch_op.drop_index('ix_restarts_instance_at')

    op.drop_table('restarts')
    op.drop_table('polls')
    op.drop_table('instances')
    op.drop_table('inbound_seen')
