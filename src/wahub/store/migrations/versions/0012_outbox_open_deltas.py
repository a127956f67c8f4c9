"""outbox_open_delta: open items (queued, sending) per instance as a sum of changes — PostgreSQL only

Why: every enqueue answers with its instance's queue depth (``queueDepth``) and refuses a full queue
(``MAX_QUEUE_SIZE``). On PostgreSQL the enqueue batch counted the open rows of its instances, one
index entry and one visibility check per open item, on the server, while the batch's requests wait:
with a raised ``MAX_QUEUE_SIZE`` and ~1,500 open items per instance, the count held the enqueue rate
to 0.29–0.32 × the bare app; with the count left out, 0.48–0.49 × (docs/PERFORMANCE.md, "Open counts
on PostgreSQL as sums of changes").

SQLite keeps one counter row per instance (0010). On PostgreSQL a counter row would be locked by
every write that changes it until that write's transaction ends: every writer of an instance (two
enqueue batches in flight, the send batch, other nodes) would wait on one row, and two transactions
changing several instances' counters in different orders could deadlock. Here triggers never update a
row: they only **insert** a change, ``(instance_id, delta)``, in the same transaction as the write to
``outbox`` that makes it, so the sum of an instance's changes equals its open items in every snapshot,
and inserts never wait for one another.

* An insert into ``outbox``: one row per instance per statement (a statement trigger over the inserted
  rows), ``+n`` for its ``n`` open rows.
* A delete: one row per instance per statement, ``-n``.
* An update that moves a row into or out of the open set (``sending`` → ``sent``, ``queued`` →
  ``canceled``, ``failed`` → ``queued`` …), or to another instance: a row per updated row (row
  triggers: PostgreSQL allows a column list, needed so that updates of acks and claims fire nothing,
  only on row triggers). The claim and a release stay inside the set and do not fire.
* ``TRUNCATE outbox``: ``outbox_open_delta`` is emptied too (a statement trigger), as the counts are 0.

The changes are folded into one row per instance by :func:`wahub.store.sql.enqueue.pg_compact` (one
statement: delete the instance's rows, insert their sum) when a read finds many, under a transaction
advisory lock per instance so that two folds never delete the same rows (no row lock waits, no deadlock).

The trigger functions name the table with the schema the migration runs in, so a session with another
``search_path`` (``pg_restore`` sets an empty one) writes to the right table. Writes with triggers off
(``session_replication_role = replica``, ``pg_restore --disable-triggers``) bypass the counts: a
data-only restore must load both tables with triggers off, or both with them on into an empty
``outbox_open_delta`` (docs/deploy.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

OPEN = "('queued', 'sending')"
TRIGGERS = ("outbox_open_insert", "outbox_open_delete", "outbox_open_leave", "outbox_open_enter",
            "outbox_open_move_out", "outbox_open_move_in", "outbox_open_truncate")
FUNCTIONS = ("outbox_open_inserted", "outbox_open_deleted", "outbox_open_plus", "outbox_open_minus",
             "outbox_open_truncated")


def upgrade() -> None:
    if op.get_context().dialect.name != 'postgresql':
        return
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    table = f"{schema}.outbox_open_delta"
    op.execute("CREATE TABLE outbox_open_delta (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
               "instance_id VARCHAR(120) NOT NULL, delta INTEGER NOT NULL)")
    op.execute("CREATE INDEX ix_outbox_open_delta_instance ON outbox_open_delta (instance_id) INCLUDE (delta)")
    # A fold deletes what it sums: vacuum at every autovacuum round after a few thousand dead rows, not at
    # a fifth of the table (the default), so reads do not wade through them.
    op.execute("ALTER TABLE outbox_open_delta SET (autovacuum_vacuum_scale_factor = 0, "
               "autovacuum_vacuum_threshold = 2000)")
    # The migration's transaction holds outbox's lock from here on: no write lands between the count and
    # the triggers.
    op.execute("LOCK TABLE outbox IN SHARE ROW EXCLUSIVE MODE")
    op.execute(f"INSERT INTO outbox_open_delta (instance_id, delta) SELECT instance_id, count(*) FROM outbox "
               f"WHERE status IN {OPEN} GROUP BY instance_id")
    op.execute("CREATE FUNCTION outbox_open_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               f"INSERT INTO {table} (instance_id, delta) SELECT instance_id, count(*) FROM changed "
               f"WHERE status IN {OPEN} GROUP BY instance_id; RETURN NULL; END $$")
    op.execute("CREATE FUNCTION outbox_open_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               f"INSERT INTO {table} (instance_id, delta) SELECT instance_id, -count(*) FROM changed "
               f"WHERE status IN {OPEN} GROUP BY instance_id; RETURN NULL; END $$")
    op.execute("CREATE FUNCTION outbox_open_plus() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               f"INSERT INTO {table} (instance_id, delta) VALUES (NEW.instance_id, 1); RETURN NULL; END $$")
    op.execute("CREATE FUNCTION outbox_open_minus() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               f"INSERT INTO {table} (instance_id, delta) VALUES (OLD.instance_id, -1); RETURN NULL; END $$")
    op.execute("CREATE FUNCTION outbox_open_truncated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               f"DELETE FROM {table}; RETURN NULL; END $$")
    op.execute("CREATE TRIGGER outbox_open_insert AFTER INSERT ON outbox REFERENCING NEW TABLE AS changed "
               "FOR EACH STATEMENT EXECUTE FUNCTION outbox_open_inserted()")
    op.execute("CREATE TRIGGER outbox_open_delete AFTER DELETE ON outbox REFERENCING OLD TABLE AS changed "
               "FOR EACH STATEMENT EXECUTE FUNCTION outbox_open_deleted()")
    op.execute("CREATE TRIGGER outbox_open_truncate AFTER TRUNCATE ON outbox "
               "FOR EACH STATEMENT EXECUTE FUNCTION outbox_open_truncated()")
    same = "OLD.instance_id = NEW.instance_id"
    op.execute(f"CREATE TRIGGER outbox_open_leave AFTER UPDATE OF status ON outbox FOR EACH ROW WHEN "
               f"(OLD.status IN {OPEN} AND NEW.status NOT IN {OPEN} AND {same}) EXECUTE FUNCTION outbox_open_minus()")
    op.execute(f"CREATE TRIGGER outbox_open_enter AFTER UPDATE OF status ON outbox FOR EACH ROW WHEN "
               f"(OLD.status NOT IN {OPEN} AND NEW.status IN {OPEN} AND {same}) EXECUTE FUNCTION outbox_open_plus()")
    # an item moved to another instance (no code path does this; kept exact all the same)
    op.execute(f"CREATE TRIGGER outbox_open_move_out AFTER UPDATE OF instance_id ON outbox FOR EACH ROW WHEN "
               f"(OLD.instance_id <> NEW.instance_id AND OLD.status IN {OPEN}) EXECUTE FUNCTION outbox_open_minus()")
    op.execute(f"CREATE TRIGGER outbox_open_move_in AFTER UPDATE OF instance_id ON outbox FOR EACH ROW WHEN "
               f"(OLD.instance_id <> NEW.instance_id AND NEW.status IN {OPEN}) EXECUTE FUNCTION outbox_open_plus()")


def downgrade() -> None:
    if op.get_context().dialect.name != 'postgresql':
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON outbox")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.execute("DROP TABLE outbox_open_delta")
