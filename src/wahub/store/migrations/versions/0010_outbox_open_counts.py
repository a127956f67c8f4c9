"""outbox_open: open items (queued, sending) per instance, kept by triggers — SQLite only

Why: every enqueue answers with its instance's queue depth (``queueDepth``) and refuses a full queue
(``MAX_QUEUE_SIZE``), and counting the open rows costs one index step per open item: ~1 ms per
enqueue batch at 16k queued items on SQLite, growing with the queue. The triggers keep the count in
the same transaction as every write that changes it, whatever code path makes the write, so the
count cannot drift from the rows.

Only a write that moves a row into or out of the open set touches the counter: an insert of a
queued row, a delete of an open row, a status change across the set (``sending`` → ``sent``,
``queued`` → ``canceled``, ``failed`` → ``queued`` …). The claim (``queued`` → ``sending``) and a
release (``sending`` → ``queued``) stay inside the set and do not.

Not on PostgreSQL: with several nodes and two enqueue batches in flight, a counter row per
instance would serialise every writer of that instance on one row lock and, with rows of several
instances in one statement, let two transactions deadlock. SQLite has one writer at a time.
(PostgreSQL keeps sums of inserted changes instead: migration 0012.)

Note for later migrations: ``batch_alter_table('outbox')`` rebuilds the table on SQLite and drops
its triggers; such a migration must create them again (:func:`create_triggers`).
``tests/integration/store/test_outbox_open_counts.py`` checks that the newest schema has them.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None

OPEN = "('queued', 'sending')"
TRIGGERS = ("outbox_open_insert", "outbox_open_delete", "outbox_open_leave", "outbox_open_enter",
            "outbox_open_move")
_PLUS = ("INSERT INTO outbox_open (instance_id, open_count) VALUES (NEW.instance_id, 1) "
         "ON CONFLICT (instance_id) DO UPDATE SET open_count = open_count + 1;")
_MINUS = "UPDATE outbox_open SET open_count = open_count - 1 WHERE instance_id = OLD.instance_id;"


def create_triggers() -> None:
    """The triggers that keep ``outbox_open`` (SQLite): one per kind of move into or out of the open set."""
    op.execute(f"CREATE TRIGGER outbox_open_insert AFTER INSERT ON outbox WHEN NEW.status IN {OPEN} "
               f"BEGIN {_PLUS} END")
    op.execute(f"CREATE TRIGGER outbox_open_delete AFTER DELETE ON outbox WHEN OLD.status IN {OPEN} "
               f"BEGIN {_MINUS} END")
    op.execute(f"CREATE TRIGGER outbox_open_leave AFTER UPDATE OF status ON outbox "
               f"WHEN OLD.status IN {OPEN} AND NEW.status NOT IN {OPEN} AND OLD.instance_id = NEW.instance_id "
               f"BEGIN {_MINUS} END")
    op.execute(f"CREATE TRIGGER outbox_open_enter AFTER UPDATE OF status ON outbox "
               f"WHEN OLD.status NOT IN {OPEN} AND NEW.status IN {OPEN} AND OLD.instance_id = NEW.instance_id "
               f"BEGIN {_PLUS} END")
    # an item moved to another instance (no code path does this; kept exact all the same)
    op.execute(f"CREATE TRIGGER outbox_open_move AFTER UPDATE OF instance_id ON outbox "
               f"WHEN OLD.instance_id != NEW.instance_id BEGIN "
               f"UPDATE outbox_open SET open_count = open_count - 1 WHERE instance_id = OLD.instance_id "
               f"AND OLD.status IN {OPEN}; "
               f"INSERT INTO outbox_open (instance_id, open_count) SELECT NEW.instance_id, 1 WHERE NEW.status IN "
               f"{OPEN} ON CONFLICT (instance_id) DO UPDATE SET open_count = open_count + 1; END")


def upgrade() -> None:
    if op.get_context().dialect.name != 'sqlite':
        return
    op.execute("CREATE TABLE outbox_open (instance_id VARCHAR(120) NOT NULL PRIMARY KEY, "
               "open_count INTEGER NOT NULL)")
    op.execute(f"INSERT INTO outbox_open (instance_id, open_count) SELECT instance_id, count(*) FROM outbox "
               f"WHERE status IN {OPEN} GROUP BY instance_id")
    create_triggers()


def downgrade() -> None:
    if op.get_context().dialect.name != 'sqlite':
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.execute("DROP TABLE outbox_open")
