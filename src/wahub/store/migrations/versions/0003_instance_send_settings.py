"""instances: per-instance default country code and typing-indicator settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('default_country_code', sa.String(length=4), nullable=True))
        batch.add_column(sa.Column('typing_indicator_enabled', sa.Boolean(), nullable=True))
        batch.add_column(sa.Column('apply_typing_to', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('apply_typing_to')
        batch.drop_column('typing_indicator_enabled')
        batch.drop_column('default_country_code')
