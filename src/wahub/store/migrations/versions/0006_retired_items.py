"""uncertain reports survive a stop; finished items of a deleted instance are kept for its re-creation

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_BIG = sa.BigInteger()
_SEQ = sa.Integer().with_variant(sa.BigInteger(), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('uncertain_reported_at', _BIG, nullable=True))
    # Items already reported before this revision existed count as reported: no second report.
    op.execute("UPDATE outbox SET uncertain_reported_at = updated_at WHERE status = 'uncertain'")
    op.create_table('outbox_retired',
    sa.Column('queue_id', sa.String(length=40), nullable=False),
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('idempotency_key', sa.String(length=220), nullable=False),
    sa.Column('key_source', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('chat_id', sa.String(length=120), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', _BIG, nullable=False),
    sa.Column('created_at', _BIG, nullable=False),
    sa.Column('updated_at', _BIG, nullable=False),
    sa.Column('handed_over_at', _BIG, nullable=True),
    sa.Column('sent_at', _BIG, nullable=True),
    sa.Column('message_id', sa.String(length=128), nullable=True),
    sa.Column('ack', sa.String(length=12), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('error_reason', sa.String(length=40), nullable=True),
    sa.Column('chosen_message_id', sa.String(length=128), nullable=True),
    sa.Column('uncertain_reported_at', _BIG, nullable=True),
    sa.Column('seq', _SEQ, nullable=False, autoincrement=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_outbox_retired')),
    sa.UniqueConstraint('queue_id', name='uq_outbox_retired_queue_id'),
    )
    op.create_index('ix_outbox_retired_instance', 'outbox_retired', ['instance_id', 'seq'])
    op.create_index('ix_outbox_retired_updated', 'outbox_retired', ['updated_at'])


def downgrade() -> None:
    op.drop_index('ix_outbox_retired_updated', table_name='outbox_retired')
    op.drop_index('ix_outbox_retired_instance', table_name='outbox_retired')
    op.drop_table('outbox_retired')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('uncertain_reported_at')
