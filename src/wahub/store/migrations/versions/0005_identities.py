"""identities: a person's hidden-number id (@lid) and phone id, remembered per instance

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('identities',
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('lid', sa.String(length=120), nullable=False),
    sa.Column('phone', sa.String(length=120), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('instance_id', 'lid', name=op.f('pk_identities'))
    )
    op.create_index('ix_identities_phone', 'identities', ['instance_id', 'phone'])


def downgrade() -> None:
    op.drop_index('ix_identities_phone', table_name='identities')
    op.drop_table('identities')
