"""instances.engine (existing rows get the configured WAHUB_ENGINE), cloud credentials, per-chat last inbound time

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-30

The default for existing rows comes from the migration's ``default_engine`` attribute (the
composition root passes ``WAHUB_ENGINE``), else the ``WAHUB_ENGINE`` environment variable, else
``whatsmeow`` (the setting's default).
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

ENGINES = ("sandbox", "whatsmeow", "cloud")


def _default_engine() -> str:
    config = op.get_context().config
    configured = config.attributes.get("default_engine") if config is not None else None
    value = str(configured or os.environ.get("WAHUB_ENGINE") or "whatsmeow").strip().lower()
    return value if value in ENGINES else "whatsmeow"


def upgrade() -> None:
    default = _default_engine()  # one of ENGINES: safe to spell out in the statement
    check = f"engine IN {ENGINES!r}"
    if op.get_bind().dialect.name == "sqlite":  # no table rebuild: a column CHECK comes with ADD COLUMN
        op.execute(f"ALTER TABLE instances ADD COLUMN engine TEXT NOT NULL DEFAULT '{default}' "
                   f"CONSTRAINT ck_instances_engine_known CHECK ({check})")
    else:
        op.execute(f"ALTER TABLE instances ADD COLUMN engine TEXT NOT NULL DEFAULT '{default}'")
        op.execute("ALTER TABLE instances ALTER COLUMN engine DROP DEFAULT")
        op.create_check_constraint('ck_instances_engine_known', 'instances', check)
    op.create_table(
        'cloud_credentials',
        sa.Column('instance_id', sa.String(length=120), nullable=False),
        sa.Column('sealed', sa.Text(), nullable=False),
        sa.Column('phone_number_id', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ondelete='CASCADE',
                                name='fk_cloud_credentials_instance_id_instances'),
        sa.PrimaryKeyConstraint('instance_id', name='pk_cloud_credentials'),
        sa.UniqueConstraint('phone_number_id', name='uq_cloud_credentials_phone_number_id'),
    )
    op.create_table(
        'cloud_chat_inbound',
        sa.Column('instance_id', sa.String(length=120), nullable=False),
        sa.Column('chat_id', sa.String(length=120), nullable=False),
        sa.Column('last_inbound_at', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ondelete='CASCADE',
                                name='fk_cloud_chat_inbound_instance_id_instances'),
        sa.PrimaryKeyConstraint('instance_id', 'chat_id', name='pk_cloud_chat_inbound'),
    )


def downgrade() -> None:
    op.drop_table('cloud_chat_inbound')
    op.drop_table('cloud_credentials')
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint('ck_instances_engine_known', 'instances', type_='check')
    op.execute("ALTER TABLE instances DROP COLUMN engine")
