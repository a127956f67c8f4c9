"""outbox: engine-chosen message id (evidence for uncertain sends) and the derived-key lookup index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('chosen_message_id', sa.String(length=128), nullable=True))
    op.create_index('ix_outbox_chosen_message_id', 'outbox', ['instance_id', 'chosen_message_id'])
    op.create_index('ix_outbox_fingerprint', 'outbox', ['instance_id', 'fingerprint', 'seq'])


def downgrade() -> None:
    op.drop_index('ix_outbox_fingerprint', table_name='outbox')
    op.drop_index('ix_outbox_chosen_message_id', table_name='outbox')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('chosen_message_id')
