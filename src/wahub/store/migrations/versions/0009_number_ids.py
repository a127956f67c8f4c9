"""number_ids: WhatsApp's answer about a typed number (the id it knows, or not on WhatsApp), per instance

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('number_ids',
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('typed', sa.String(length=120), nullable=False),
    sa.Column('resolved', sa.String(length=120), nullable=True),
    sa.Column('checked_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('instance_id', 'typed', name=op.f('pk_number_ids'))
    )


def downgrade() -> None:
    op.drop_table('number_ids')
