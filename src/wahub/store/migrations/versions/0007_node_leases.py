"""nodes and leases: several hub nodes on one PostgreSQL, each instance owned by one node

Revision ID: 0007
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('heartbeat_at', sa.BigInteger(), nullable=False),
    sa.Column('started_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes'))
    )
    op.create_table('leases',
    sa.Column('instance_id', sa.String(length=120), nullable=False),
    sa.Column('owner', sa.String(length=120), nullable=True),
    sa.Column('token', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_leases_instance_id_instances'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_leases'))
    )
    op.create_index('ix_leases_owner', 'leases', ['owner'])


def downgrade() -> None:
    op.drop_index('ix_leases_owner', table_name='leases')
    op.drop_table('leases')
    op.drop_table('nodes')
