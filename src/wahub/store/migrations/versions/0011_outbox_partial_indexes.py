"""outbox: the message-id and fingerprint indexes hold only the rows their lookups can find

Why: a new item enters every index of ``outbox``, and an index whose key does not follow the insert
order puts each row of a batch on a page of its own. The enqueue batch's commit wrote ~74 pages
(4 KiB each) to the write-ahead log for 8 rows (SQLite, counted with strace), and the commit was the
largest part of the batch. Three indexes took entries their lookups never read:

* ``ix_outbox_message_id``, ``ix_outbox_chosen_message_id``: a queued item has no message id yet
  (NULL); the lookups (acks, votes, replies, the evidence of an uncertain send) are equalities, which
  a partial index ``WHERE … IS NOT NULL`` serves (SQLite and PostgreSQL both prove it from ``=``).
* ``ix_outbox_fingerprint``: only :meth:`latest_derived` reads it, for items whose key was derived
  from the payload (``key_source = 'derived'``); an item sent with a key of its own needs no entry.
  The query names the value as text, so the planner can use the partial index on both databases.

Plain ``CREATE``/``DROP INDEX`` (no table rebuild): the triggers of 0010 stay. On PostgreSQL they run
inside the migration's transaction, not ``CONCURRENTLY`` (which cannot run in one, and leaves an invalid
index behind when it fails): ``outbox`` is locked for reads and writes while the three are built, about
0.1 s per 50,000 rows on the machine of docs/PERFORMANCE.md, so during a rolling upgrade the other
nodes' writes wait that long.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_PARTIAL = {
    "ix_outbox_message_id": (["instance_id", "message_id"], "message_id IS NOT NULL"),
    "ix_outbox_chosen_message_id": (["instance_id", "chosen_message_id"], "chosen_message_id IS NOT NULL"),
    "ix_outbox_fingerprint": (["instance_id", "fingerprint", "seq"], "key_source = 'derived'"),
}


def upgrade() -> None:
    for name, (columns, where) in _PARTIAL.items():
        op.drop_index(name, table_name="outbox")
        op.create_index(name, "outbox", columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def downgrade() -> None:
    for name, (columns, _) in _PARTIAL.items():
        op.drop_index(name, table_name="outbox")
        op.create_index(name, "outbox", columns)
