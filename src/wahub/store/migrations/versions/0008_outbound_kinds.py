"""outbox: the kinds of the WaAPI send actions (media, location, vcard, reaction, edit, revoke, forward)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

KINDS = ('text', 'poll', 'media', 'location', 'vcard', 'reaction', 'edit', 'revoke', 'forward')


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_constraint(op.f('ck_outbox_kind_known'), type_='check')
        batch.create_check_constraint('kind_known', f"kind IN {KINDS!r}")


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_constraint(op.f('ck_outbox_kind_known'), type_='check')
        batch.create_check_constraint('kind_known', "kind IN ('text', 'poll')")
