"""The send path's statements, built once, and the same statements run synchronously on SQLite in a
batch (:mod:`wahub.store.sql.sendbatch`).

Each call only binds its values (building an UPDATE and its cache key on every call cost about as
much as running it). What each statement guards: ``docs/PERFORMANCE.md`` ("4 statements and 2
commits") and :mod:`wahub.store.sql`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from wahub.domain.outbox import ItemKind, OutboxItem
from wahub.domain.outbox import ItemStatus as St
from wahub.store import tables as t
from wahub.store.records import EventDraft, dump_json, outbox_item
from wahub.store.sql.sendbatch import Statement

# Bind names are prefixed so they never collide with the column names SQLAlchemy reserves for SET.
_o, _sl = t.outbox, t.send_log
_DUE = (sa.select(_o.c.seq).where(_o.c.instance_id == sa.bindparam("c_instance"), _o.c.status == St.QUEUED.value,
                                  _o.c.next_attempt_at <= sa.bindparam("c_now"))
        .order_by(_o.c.seq).limit(1).scalar_subquery())
_CLAIM = (_o.update().where(_o.c.seq == _DUE, _o.c.status == St.QUEUED.value)
          .values(status=St.SENDING.value, updated_at=sa.bindparam("c_now")).returning(*_o.c))
_CLAIM_HAND_OVER = (_o.update().where(_o.c.seq == _DUE, _o.c.status == St.QUEUED.value)
                    .values(status=St.SENDING.value, updated_at=sa.bindparam("c_now"),
                            handed_over_at=sa.bindparam("c_now"), chosen_message_id=sa.bindparam("c_chosen"))
                    .returning(*_o.c))
_HAND_OVER = (_o.update().where(_o.c.seq == sa.bindparam("h_seq"))
              .values(handed_over_at=sa.bindparam("h_now"), updated_at=sa.bindparam("h_now"),
                      chosen_message_id=sa.bindparam("h_chosen")))
_TAKE_BACK = (_o.update().where(_o.c.seq == sa.bindparam("b_seq"), _o.c.status == St.SENDING.value)
              .values(handed_over_at=None, chosen_message_id=None))
_LOG_SEND = _sl.insert()  # executed with {"instance_id", "at", "queue_id"}
_STAMP = (_sl.update().where(_sl.c.instance_id == sa.bindparam("l_instance"), _sl.c.at >= sa.bindparam("l_since"),
                             _sl.c.queue_id == sa.bindparam("l_queue")).values(at=sa.bindparam("l_at")))
_STAMP_ANY = _sl.update().where(_sl.c.queue_id == sa.bindparam("l_queue")).values(at=sa.bindparam("l_at"))
_MARK_SENT = (_o.update().where(_o.c.seq == sa.bindparam("s_seq"),
                                _o.c.status.in_(sa.bindparam("s_from", expanding=True)))
              .values(status=St.SENT.value, sent_at=sa.bindparam("s_sent_at"), message_id=sa.bindparam("s_message_id"),
                      updated_at=sa.bindparam("s_now"), attempts=_o.c.attempts + 1, ack="server", last_error=None,
                      error_reason=None))


def _release(error: bool, count_attempt: bool) -> sa.Update:
    values: dict[str, Any] = {"status": St.QUEUED.value, "next_attempt_at": sa.bindparam("r_next"),
                              "updated_at": sa.bindparam("r_now"), "handed_over_at": None}
    if error:
        values.update(last_error=sa.bindparam("r_error"), error_reason=sa.bindparam("r_reason"))
    if count_attempt:
        values["attempts"] = _o.c.attempts + 1
    return _o.update().where(_o.c.seq == sa.bindparam("r_seq"), _o.c.status == St.SENDING.value).values(**values)


# release(): by (error given, count_attempt); every item's first send to a new number passes here.
_RELEASE = {(error, count): _release(error, count) for error in (False, True) for count in (False, True)}
_QUEUE_ID_OF = sa.select(_o.c.queue_id).where(_o.c.seq == sa.bindparam("r_seq"))
_UNLOG = _sl.delete().where(_sl.c.queue_id == sa.bindparam("u_queue"))


# The send loop's own outcome: only from `sending` (a reconciliation by receipt uses _MARK_SENT).
_MARK_SENT_OWN = (_o.update().where(_o.c.seq == sa.bindparam("s_seq"), _o.c.status == St.SENDING.value)
                  .values(status=St.SENT.value, sent_at=sa.bindparam("s_sent_at"),
                          message_id=sa.bindparam("s_message_id"), updated_at=sa.bindparam("s_now"),
                          attempts=_o.c.attempts + 1, ack="server", last_error=None, error_reason=None))
_LOG_KEYS = ("instance_id", "at", "queue_id")


class OnSqlite:
    """The send path's statements compiled for SQLite, run synchronously in the database thread by
    one batch (each method is one request of :class:`wahub.store.sql.sendbatch.SqliteSendWrites`)."""

    CLAIM = Statement.of(_CLAIM)
    CLAIM_HAND_OVER = Statement.of(_CLAIM_HAND_OVER)
    HAND_OVER = Statement.of(_HAND_OVER)
    TAKE_BACK = Statement.of(_TAKE_BACK)
    LOG_SEND = Statement.of(_LOG_SEND, _LOG_KEYS)
    STAMP = Statement.of(_STAMP)
    STAMP_ANY = Statement.of(_STAMP_ANY)
    MARK_SENT = Statement.of(_MARK_SENT_OWN)
    RELEASE = {k: Statement.of(v) for k, v in _RELEASE.items()}
    QUEUE_ID_OF = Statement.of(_QUEUE_ID_OF)
    UNLOG = Statement.of(_UNLOG)
    POLL = Statement.of(sqlite.insert(t.polls).on_conflict_do_nothing(), [c.name for c in t.polls.c])
    EVENTS = Statement.of(t.events.insert(), ("event_id", "instance_id", "event", "body", "status", "attempts",
                                              "next_attempt_at", "created_at"))

    @classmethod
    def claim(cls, conn: sqlite3.Connection, instance_id: str, now: int, hand_over: bool,
              chosen_message_id: str | None) -> OutboxItem | None:
        """:meth:`OutboxSql.claim_next`: the claim, and with ``hand_over`` its send-log row."""
        if hand_over:
            cur = cls.CLAIM_HAND_OVER.run(conn, {"c_instance": instance_id, "c_now": now,
                                                 "c_chosen": chosen_message_id})
        else:
            cur = cls.CLAIM.run(conn, {"c_instance": instance_id, "c_now": now})
        row = cur.fetchone()
        if row is None:
            return None
        item = outbox_item(dict(zip((d[0] for d in cur.description), row, strict=True)))
        if hand_over:
            cls.LOG_SEND.run(conn, {"instance_id": instance_id, "at": now, "queue_id": item.queue_id})
        return item

    @classmethod
    def hand_over(cls, conn: sqlite3.Connection, item: OutboxItem, now: int, chosen_message_id: str | None) -> None:
        """:meth:`OutboxSql.mark_handed_over`."""
        cls.HAND_OVER.run(conn, {"h_seq": item.seq, "h_now": now, "h_chosen": chosen_message_id})
        cls.LOG_SEND.run(conn, {"instance_id": item.instance_id, "at": now, "queue_id": item.queue_id})

    @classmethod
    def take_back(cls, conn: sqlite3.Connection, item: OutboxItem) -> None:
        """:meth:`OutboxSql.take_back_hand_over`."""
        cls.TAKE_BACK.run(conn, {"b_seq": item.seq})
        cls.UNLOG.run(conn, {"u_queue": item.queue_id})

    @classmethod
    def sent(cls, conn: sqlite3.Connection, item: OutboxItem, message_id: str, now: int, sent_at: int,
             events: Sequence[EventDraft]) -> bool:
        """:meth:`OutboxSql.mark_sent` for the send loop's own outcome: stamp, outcome, poll, events."""
        stamped = cls.STAMP.run(conn, {"l_instance": item.instance_id, "l_since": item.updated_at,
                                       "l_queue": item.queue_id, "l_at": sent_at})
        if stamped.rowcount == 0:  # the wall clock stepped back between claim and hand-over
            cls.STAMP_ANY.run(conn, {"l_queue": item.queue_id, "l_at": sent_at})
        res = cls.MARK_SENT.run(conn, {"s_seq": item.seq, "s_sent_at": sent_at, "s_message_id": message_id,
                                       "s_now": now})
        if res.rowcount != 1:
            return False
        if item.kind == ItemKind.POLL:
            cls.POLL.run(conn, {
                "instance_id": item.instance_id, "message_id": message_id, "queue_id": item.queue_id,
                "chat_id": item.chat_id, "idempotency_key": item.idempotency_key,
                "caption": item.payload["caption"], "options": dump_json(item.payload["options"]),
                "multiple": 1 if item.payload.get("multipleAnswers") else 0, "created_at": now})
        if events:
            conn.executemany(cls.EVENTS.sql, [
                {"event_id": e.event_id, "instance_id": e.instance_id, "event": e.event, "body": e.body,
                 "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now} for e in events])
        return True

    @classmethod
    def release(cls, conn: sqlite3.Connection, seq: int, params: dict[str, Any], key: tuple[bool, bool],
                unlog: bool) -> None:
        """:meth:`OutboxSql.release`."""
        row = cls.QUEUE_ID_OF.run(conn, {"r_seq": seq}).fetchone()
        cls.RELEASE[key].run(conn, params)
        if unlog and row is not None:
            cls.UNLOG.run(conn, {"u_queue": row[0]})
