"""An in-memory :class:`~wahub.store.base.Store`: the fake the runtime runs on in fast tests.

It keeps the SQL store's semantics, invariants included (one item per idempotency key and
instance, at most one ``sending`` item per instance, FIFO claims among due items, forward-only
acks, vote and inbound dedupe), and passes the same contract suite
(``tests/integration/test_store_contract.py``).

Why it is safe without locks: every method runs to completion without awaiting anything, so on
one event loop each call is atomic, exactly like one SQL transaction. It does no I/O and never
leaves the loop's thread, so a test driven by a fake clock settles with ``asyncio.sleep(0)``.
Values are copied in and out (JSON columns are kept serialised, as in SQL), so callers can
never mutate stored state through a returned record.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from wahub.domain.errors import Conflict, NotFound
from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem
from wahub.domain.outbox import ItemStatus as St
from wahub.store.base import EventBuilder, QueueFullSignal
from wahub.store.records import (
    EventDraft,
    EventRecord,
    InstanceRecord,
    PollRecord,
    QueueStats,
    Transition,
    VoteRecord,
    dump_json,
    outbox_item,
)

Row = dict[str, Any]

_OPEN = (St.QUEUED.value, St.SENDING.value)
_FINAL_PURGEABLE = (St.SENT.value, St.FAILED.value, St.CANCELED.value)  # `uncertain` waits for a human, never purged
UNCERTAIN_ERROR = "process stopped after handing the item to the engine; delivery unknown"  # as SqlStore




def _item(row: Row) -> OutboxItem:
    return outbox_item(row)


def _event(row: Row) -> EventRecord:
    return EventRecord(**row)


class MemoryStore:
    """All persistence of wa-hub in dictionaries; lost when the object goes away."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)  # one counter for every table's surrogate keys
        self._instances: dict[str, InstanceRecord] = {}
        self._outbox: dict[int, Row] = {}  # seq -> row; insertion order is seq order
        self._send_log: list[Row] = []
        self._events: dict[int, Row] = {}  # seq -> EventRecord fields
        self._polls: dict[tuple[str, str], PollRecord] = {}
        self._votes: dict[tuple[str, str, str], Row] = {}
        self._inbound_seen: dict[tuple[str, str], int] = {}
        self._transitions: list[tuple[str, Transition]] = []  # (instance_id, transition), oldest first
        self._restarts: list[tuple[str, int]] = []  # (instance_id, at)

    # -- lifecycle ------------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Nothing to migrate."""

    async def close(self) -> None:
        """Nothing to close; the data stays until the object is dropped."""

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    # -- instances -------------------------------------------------------------------------------
    async def create_instance(self, *, id: str, name: str, webhook_url: str | None,
                              webhook_events: list[str], webhook_secret: str | None, now: int,
                              state: str = "initializing") -> InstanceRecord:
        """Insert an instance. Raises :class:`Conflict` when the id exists."""
        if id in self._instances:
            raise Conflict(f"an instance with id {id!r} already exists", instanceId=id)
        rec = InstanceRecord(
            id=id, name=name, webhook_url=webhook_url, webhook_events=list(webhook_events),
            webhook_secret=webhook_secret, state=state, state_since=now, state_reason=None,
            restricted_until=None, phone=None, push_name=None, limit_per_minute=None, limit_per_hour=None,
            send_interval_ms=None, last_error=None, created_at=now)
        self._instances[id] = rec
        return self._copy_instance(rec)

    async def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance, or None."""
        rec = self._instances.get(instance_id)
        return self._copy_instance(rec) if rec else None

    async def list_instances(self) -> list[InstanceRecord]:
        """Every instance, oldest first."""
        recs = sorted(self._instances.values(), key=lambda r: (r.created_at, r.id))
        return [self._copy_instance(r) for r in recs]

    async def update_instance(self, instance_id: str, **values: Any) -> None:
        """Set fields of an instance (``webhook_events`` as a list).

        Raises :class:`NotFound`, or ``TypeError`` for a name that is not a field.
        """
        rec = self._instances.get(instance_id)
        if rec is None:
            raise NotFound(f"instance {instance_id} not found")
        if "webhook_events" in values:
            values["webhook_events"] = list(values["webhook_events"])
        self._instances[instance_id] = replace(rec, **values)

    async def delete_instance(self, instance_id: str) -> bool:
        """Delete an instance and everything recorded for it; True when it existed."""
        def mine(key: tuple[str, ...]) -> bool:
            return key[0] == instance_id

        self._outbox = {s: r for s, r in self._outbox.items() if r["instance_id"] != instance_id}
        self._send_log = [r for r in self._send_log if r["instance_id"] != instance_id]
        self._events = {s: r for s, r in self._events.items() if r["instance_id"] != instance_id}
        self._polls = {k: v for k, v in self._polls.items() if not mine(k)}
        self._votes = {k: v for k, v in self._votes.items() if not mine(k)}
        self._inbound_seen = {k: v for k, v in self._inbound_seen.items() if not mine(k)}
        self._transitions = [x for x in self._transitions if x[0] != instance_id]
        self._restarts = [x for x in self._restarts if x[0] != instance_id]
        return self._instances.pop(instance_id, None) is not None

    async def record_transition(self, instance_id: str, *, from_state: str, to_state: str, reason: str | None,
                                now: int, events: Sequence[EventDraft] = (), **instance_values: Any) -> None:
        """Move an instance to ``to_state`` and store its webhook events in one step."""
        rec = self._instances.get(instance_id)
        if rec is not None:
            self._instances[instance_id] = replace(rec, state=to_state, state_since=now, state_reason=reason,
                                                   **instance_values)
        self._transitions.append((instance_id, Transition(now, from_state, to_state, reason)))
        self._add_events(events, now)

    async def transitions(self, instance_id: str, limit: int = 20) -> list[Transition]:
        """The most recent transitions, newest first."""
        mine = [tr for iid, tr in self._transitions if iid == instance_id]
        return mine[::-1][:limit]

    async def count_transitions_to(self, instance_id: str, to_state: str, since: int) -> int:
        """How many times the instance entered ``to_state`` since ``since`` (epoch ms)."""
        return sum(1 for iid, tr in self._transitions
                   if iid == instance_id and tr.to_state == to_state and tr.at > since)

    async def record_restart(self, instance_id: str, *, kind: str, reason: str | None, now: int) -> None:
        """Count one restart against the instance's budget."""
        self._restarts.append((instance_id, now))

    async def restarts_since(self, instance_id: str, since: int) -> list[int]:
        """Times (epoch ms, ascending) of restarts after ``since``."""
        return sorted(at for iid, at in self._restarts if iid == instance_id and at > since)

    # -- outbox: enqueue -----------------------------------------------------------------------
    async def find_item_by_key(self, instance_id: str, key: str) -> OutboxItem | None:
        """The item stored under an idempotency key, or None."""
        row = self._by_key(instance_id, key)
        return _item(row) if row else None

    async def latest_derived(self, instance_id: str, fingerprint: str) -> OutboxItem | None:
        """The newest item with a derived key and this fingerprint, or None."""
        rows = [r for r in self._outbox.values() if r["instance_id"] == instance_id
                and r["fingerprint"] == fingerprint and r["key_source"] == "derived"]
        return _item(rows[-1]) if rows else None

    async def insert_item(self, *, queue_id: str, instance_id: str, idempotency_key: str, key_source: str,
                          kind: str, chat_id: str, payload: dict[str, Any], fingerprint: str, now: int,
                          max_open: int) -> tuple[OutboxItem, bool, int]:
        """Insert a queued item unless its key exists (as :meth:`SqlStore.insert_item`).

        Returns ``(item, created, open_count)``. Raises :class:`QueueFullSignal` when the
        instance already holds ``max_open`` open items and the key is new.
        """
        open_count = sum(1 for r in self._outbox.values()
                         if r["instance_id"] == instance_id and r["status"] in _OPEN)
        existing = self._by_key(instance_id, idempotency_key)
        if existing is not None:
            return _item(existing), False, open_count
        if open_count >= max_open:
            raise QueueFullSignal(open_count)
        seq = next(self._seq)
        row: Row = {
            "seq": seq, "queue_id": queue_id, "instance_id": instance_id, "idempotency_key": idempotency_key,
            "key_source": key_source, "kind": ItemKind(kind).value, "chat_id": chat_id,
            "payload": dump_json(payload), "fingerprint": fingerprint, "status": St.QUEUED.value, "attempts": 0,
            "next_attempt_at": now, "created_at": now, "updated_at": now, "handed_over_at": None,
            "sent_at": None, "message_id": None, "ack": None, "last_error": None, "error_reason": None,
            "chosen_message_id": None,
        }
        self._outbox[seq] = row
        return _item(row), True, open_count + 1

    # -- outbox: drain -------------------------------------------------------------------------
    async def claim_next(self, instance_id: str, now: int) -> OutboxItem | None:
        """Move the first due queued item (FIFO by enqueue order) to ``sending`` and return it.

        None when nothing is due or an item of the instance is already ``sending``.
        """
        mine = [r for r in self._outbox.values() if r["instance_id"] == instance_id]
        if any(r["status"] == St.SENDING.value for r in mine):
            return None
        for row in mine:  # seq order
            if row["status"] == St.QUEUED.value and row["next_attempt_at"] <= now:
                row.update(status=St.SENDING.value, updated_at=now)
                return _item(row)
        return None

    async def next_due_at(self, instance_id: str) -> int | None:
        """Smallest ``next_attempt_at`` among queued items (epoch ms), or None when none is queued."""
        due = [r["next_attempt_at"] for r in self._outbox.values()
               if r["instance_id"] == instance_id and r["status"] == St.QUEUED.value]
        return min(due) if due else None

    async def send_history(self, instance_id: str, since: int) -> list[int]:
        """Hand-over times (epoch ms, ascending) of the instance's sends after ``since``."""
        return sorted(r["at"] for r in self._send_log if r["instance_id"] == instance_id and r["at"] > since)

    async def release(self, seq: int, *, next_attempt_at: int, now: int, error: str | None = None,
                      reason: str | None = None, count_attempt: bool = False, unlog: bool = False) -> None:
        """Return a ``sending`` item to ``queued`` (``unlog`` drops its send-log rows)."""
        row = self._outbox.get(seq)
        if row is None:
            return
        if row["status"] == St.SENDING.value:
            row.update(status=St.QUEUED.value, next_attempt_at=next_attempt_at, updated_at=now, handed_over_at=None)
            if error is not None:
                row.update(last_error=error, error_reason=reason)
            if count_attempt:
                row["attempts"] += 1
        if unlog:
            self._unlog(row["queue_id"])

    async def mark_handed_over(self, item: OutboxItem, now: int, *, chosen_message_id: str | None = None) -> None:
        """Record that the item is about to reach the engine (and log the send for the windows)."""
        row = self._outbox.get(item.seq)
        if row is not None:
            row.update(handed_over_at=now, updated_at=now, chosen_message_id=chosen_message_id)
        self._send_log.append({"id": next(self._seq), "instance_id": item.instance_id, "at": now,
                               "queue_id": item.queue_id})

    async def stamp_send(self, queue_id: str, at: int) -> None:
        """Set the logged time of the item's send to the engine-call instant ``at``."""
        for r in self._send_log:
            if r["queue_id"] == queue_id:
                r["at"] = at

    async def latest_send_at(self) -> int | None:
        """The newest send instant of any instance (epoch ms), or None."""
        return max((r["at"] for r in self._send_log), default=None)

    async def mark_sent(self, item: OutboxItem, *, message_id: str, now: int, sent_at: int | None = None,
                        events: Sequence[EventDraft] = (), from_statuses: Sequence[str] = (St.SENDING.value,)) -> bool:
        """Record a successful send (and, for a poll, the poll itself) while in ``from_statuses``."""
        row = self._outbox.get(item.seq)
        if row is None or row["status"] not in from_statuses:
            return False
        row.update(status=St.SENT.value, sent_at=sent_at if sent_at is not None else now, message_id=message_id,
                   updated_at=now, attempts=row["attempts"] + 1, ack="server", last_error=None, error_reason=None)
        if item.kind == ItemKind.POLL:
            self._polls.setdefault((item.instance_id, message_id), PollRecord(
                item.instance_id, message_id, item.queue_id, item.chat_id, item.idempotency_key,
                item.payload["caption"], list(item.payload["options"]),
                bool(item.payload.get("multipleAnswers"))))
        self._add_events(events, now)
        return True

    async def mark_failed(self, item: OutboxItem, *, error: str, reason: str, now: int, count_attempt: bool,
                          events: Sequence[EventDraft] = (), unlog: bool = False) -> None:
        """Record a final failure with its webhook events (``unlog`` as in :meth:`release`)."""
        row = self._outbox.get(item.seq)
        if row is not None:
            row.update(status=St.FAILED.value, last_error=error, error_reason=reason, updated_at=now)
            if count_attempt:
                row["attempts"] += 1
        if unlog:
            self._unlog(item.queue_id)
        self._add_events(events, now)

    async def recover_in_flight(self, now: int) -> tuple[int, list[OutboxItem]]:
        """Start-up recovery of ``sending`` items: never handed over → ``queued``, else ``uncertain``.

        Returns ``(requeued, uncertain_items)`` with the items as they are after recovery.
        """
        requeued = 0
        uncertain: list[OutboxItem] = []
        for row in self._outbox.values():
            if row["status"] != St.SENDING.value:
                continue
            if row["handed_over_at"] is None:
                row.update(status=St.QUEUED.value, updated_at=now)
                requeued += 1
            else:
                row.update(status=St.UNCERTAIN.value, updated_at=now, last_error=UNCERTAIN_ERROR,
                           error_reason="uncertain")
                uncertain.append(_item(row))
        return requeued, uncertain

    # -- outbox: queries and operator actions ---------------------------------------------------
    async def get_item(self, queue_id: str) -> OutboxItem | None:
        """The item with ``queue_id``, or None."""
        for row in self._outbox.values():
            if row["queue_id"] == queue_id:
                return _item(row)
        return None

    async def find_by_chosen_id(self, instance_id: str, message_id: str) -> OutboxItem | None:
        """The item whose engine-chosen message id is ``message_id``, or None."""
        for row in self._outbox.values():
            if row["instance_id"] == instance_id and row.get("chosen_message_id") == message_id:
                return _item(row)
        return None

    async def get_item_by_message_id(self, instance_id: str, message_id: str) -> OutboxItem | None:
        """The sent item that WhatsApp knows as ``message_id``, or None."""
        row = self._by_message_id(instance_id, message_id)
        return _item(row) if row else None

    async def list_items(self, instance_id: str, *, statuses: Sequence[str] | None, limit: int,
                         offset: int) -> tuple[list[OutboxItem], int]:
        """A page of items (oldest first) and the total count matching the filter."""
        rows = [r for r in self._outbox.values() if r["instance_id"] == instance_id
                and (not statuses or r["status"] in statuses)]
        return [_item(r) for r in rows[offset:offset + limit]], len(rows)

    async def queue_stats(self, instance_id: str) -> QueueStats:
        """Counts by status and the oldest open item's enqueue time."""
        counts: dict[str, int] = {}
        oldest: int | None = None
        for r in self._outbox.values():
            if r["instance_id"] != instance_id:
                continue
            counts[r["status"]] = counts.get(r["status"], 0) + 1
            if r["status"] in _OPEN and (oldest is None or r["created_at"] < oldest):
                oldest = r["created_at"]
        return QueueStats(counts, oldest)

    async def set_item_status(self, queue_id: str, *, from_statuses: Sequence[str], to_status: str, now: int,
                              reset_attempts: bool = False, events: Sequence[EventDraft] = (),
                              error: str | None = None, reason: str | None = None) -> bool:
        """Compare-and-set an item's status (cancel, retry, resend); True when it changed."""
        row = next((r for r in self._outbox.values() if r["queue_id"] == queue_id), None)
        if row is None or row["status"] not in from_statuses:
            return False
        if to_status == St.SENDING.value and any(
                r["status"] == St.SENDING.value and r["instance_id"] == row["instance_id"] and r is not row
                for r in self._outbox.values()):
            raise ValueError("another item of the instance is already sending")  # the SQL unique index
        row.update(status=ItemStatus(to_status).value, updated_at=now)
        if to_status == St.QUEUED.value:
            row.update(next_attempt_at=now, handed_over_at=None)
        if reset_attempts:
            row["attempts"] = 0
        if error is not None:
            row.update(last_error=error, error_reason=reason)
        self._add_events(events, now)
        return True

    async def clear_queue(self, instance_id: str, now: int) -> int:
        """Cancel every queued item of the instance; returns how many."""
        n = 0
        for r in self._outbox.values():
            if r["instance_id"] == instance_id and r["status"] == St.QUEUED.value:
                r.update(status=St.CANCELED.value, updated_at=now, last_error="canceled: queue cleared",
                         error_reason="canceled")
                n += 1
        return n

    async def count_sent_since(self, instance_id: str, since: int) -> int:
        """Sends recorded in the send log after ``since``."""
        return sum(1 for r in self._send_log if r["instance_id"] == instance_id and r["at"] > since)

    async def count_failures_since(self, instance_id: str, since: int) -> int:
        """Items that failed (finally) after ``since``."""
        return sum(1 for r in self._outbox.values()
                   if r["instance_id"] == instance_id and r["status"] == St.FAILED.value and r["updated_at"] > since)

    async def purge(self, older_than: int) -> dict[str, int]:
        """Delete final outbox items, delivered/dead events, send-log rows, seen ids older than a time."""
        out: dict[str, int] = {}
        before = len(self._outbox)
        self._outbox = {s: r for s, r in self._outbox.items()
                        if not (r["updated_at"] < older_than and r["status"] in _FINAL_PURGEABLE)}
        out["outbox"] = before - len(self._outbox)
        before = len(self._send_log)
        self._send_log = [r for r in self._send_log if r["at"] >= older_than]
        out["send_log"] = before - len(self._send_log)
        before = len(self._events)
        self._events = {s: r for s, r in self._events.items()
                        if not (r["created_at"] < older_than and r["status"] in ("delivered", "dead"))}
        out["events"] = before - len(self._events)
        before = len(self._inbound_seen)
        self._inbound_seen = {k: at for k, at in self._inbound_seen.items() if at >= older_than}
        out["inbound_seen"] = before - len(self._inbound_seen)
        before = len(self._transitions)
        self._transitions = [x for x in self._transitions if x[1].at >= older_than]
        out["transitions"] = before - len(self._transitions)
        before = len(self._restarts)
        self._restarts = [x for x in self._restarts if x[1] >= older_than]
        out["restarts"] = before - len(self._restarts)
        return out

    # -- polls, votes, acks, inbound ---------------------------------------------------------------
    async def get_poll(self, instance_id: str, message_id: str) -> PollRecord | None:
        """The poll wa-hub sent as ``message_id``, or None."""
        poll = self._polls.get((instance_id, message_id))
        return replace(poll, options=list(poll.options)) if poll else None

    async def record_vote(self, instance_id: str, poll_message_id: str, voter: str, *, timestamp: int,
                          selected: list[str], voter_alt: str | None, now: int,
                          event: EventDraft | None) -> bool:
        """Store a voter's latest vote and its event; False for a duplicate or stale vote.

        A vote is a duplicate when the stored one has the same timestamp, and stale when it is
        older than the stored one (votes can arrive out of order after reconnects).
        """
        key = (instance_id, poll_message_id, voter)
        stored = self._votes.get(key)
        if stored is not None and timestamp <= stored["timestamp"]:
            return False
        self._votes[key] = {"timestamp": timestamp, "selected": dump_json(selected), "voter_alt": voter_alt,
                            "updated_at": now}
        if event is not None:
            self._add_events([event], now)
        return True

    async def latest_votes(self, instance_id: str, poll_message_id: str) -> list[VoteRecord]:
        """Every voter's latest vote on a poll."""
        return [VoteRecord(voter, json.loads(v["selected"]), v["timestamp"], v["voter_alt"])
                for (iid, pid, voter), v in sorted(self._votes.items())
                if iid == instance_id and pid == poll_message_id]

    async def record_inbound(self, instance_id: str, message_id: str, *, now: int,
                             event: EventDraft | None) -> bool:
        """Mark an inbound message seen together with its event; False when it was seen before."""
        if (instance_id, message_id) in self._inbound_seen:
            return False
        self._inbound_seen[(instance_id, message_id)] = now
        if event is not None:
            self._add_events([event], now)
        return True

    async def advance_ack(self, instance_id: str, message_id: str, ack: str, order: Sequence[str], *,
                          now: int, event_for: EventBuilder) -> OutboxItem | None:
        """Move a sent item's ack forward only (``order`` lists acks by rank).

        ``event_for(item)`` builds the event stored with the change. Returns the item when the
        ack advanced, None when it is unknown, equal or a step back.
        """
        row = self._by_message_id(instance_id, message_id)
        if row is None:
            return None
        current = row["ack"] or "server"
        if current in order and order.index(ack) <= order.index(current):
            return None
        row["ack"] = ack
        item = _item(row)
        ev = event_for(item)
        if ev is not None:
            self._add_events([ev], now)
        return item

    # -- webhook events -------------------------------------------------------------------------
    async def add_events(self, events: Sequence[EventDraft], now: int) -> None:
        """Store events for delivery."""
        self._add_events(events, now)

    async def instances_with_pending_events(self) -> list[str]:
        """Instance ids that have undelivered events."""
        pending = (r["instance_id"] for r in self._events.values() if r["status"] == "pending")
        return list(dict.fromkeys(pending))

    async def head_event(self, instance_id: str) -> EventRecord | None:
        """The oldest pending event of an instance (delivery is in order per instance)."""
        for row in self._events.values():
            if row["instance_id"] == instance_id and row["status"] == "pending":
                return _event(row)
        return None

    async def event_delivered(self, seq: int, *, now: int, status_code: int) -> None:
        """Mark an event delivered."""
        row = self._events.get(seq)
        if row is not None:
            row.update(status="delivered", delivered_at=now, attempts=row["attempts"] + 1,
                       last_status_code=status_code, last_error=None)

    async def event_failed(self, seq: int, *, now: int, next_attempt_at: int | None, error: str,
                           status_code: int | None) -> None:
        """Record a failed attempt: retry at ``next_attempt_at``, or dead letter when it is None."""
        row = self._events.get(seq)
        if row is None:
            return
        row.update(attempts=row["attempts"] + 1, last_error=error, last_status_code=status_code)
        if next_attempt_at is None:
            row["status"] = "dead"
        else:
            row["next_attempt_at"] = next_attempt_at

    async def list_events(self, instance_id: str, *, status: str | None, limit: int,
                          offset: int = 0) -> list[EventRecord]:
        """Events of an instance, newest first, optionally by status."""
        rows = [r for r in reversed(self._events.values())
                if r["instance_id"] == instance_id and (not status or r["status"] == status)]
        return [_event(r) for r in rows[offset:offset + limit]]

    async def replay_events(self, instance_id: str, *, event_id: str | None, now: int) -> int:
        """Put dead letters (one, or all of the instance) back to pending; returns how many."""
        n = 0
        for r in self._events.values():
            if (r["instance_id"] == instance_id and r["status"] == "dead"
                    and (event_id is None or r["event_id"] == event_id)):
                r.update(status="pending", next_attempt_at=now, attempts=0)
                n += 1
        return n

    async def event_stats(self, instance_id: str) -> dict[str, Any]:
        """Backlog, dead letters, last success and last error of an instance's webhook delivery."""
        mine = [r for r in self._events.values() if r["instance_id"] == instance_id]
        counts: dict[str, int] = {}
        for r in mine:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        delivered_at = [r["delivered_at"] for r in mine if r["delivered_at"] is not None]
        last_err = next((r["last_error"] for r in reversed(mine) if r["last_error"] is not None), None)
        return {"backlog": counts.get("pending", 0), "dead": counts.get("dead", 0),
                "delivered": counts.get("delivered", 0), "lastSuccessAt": max(delivered_at, default=None),
                "lastError": last_err}

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _copy_instance(rec: InstanceRecord) -> InstanceRecord:
        return replace(rec, webhook_events=list(rec.webhook_events))

    def _by_key(self, instance_id: str, key: str) -> Row | None:
        return next((r for r in self._outbox.values()
                     if r["instance_id"] == instance_id and r["idempotency_key"] == key), None)

    def _by_message_id(self, instance_id: str, message_id: str) -> Row | None:
        return next((r for r in self._outbox.values()
                     if r["instance_id"] == instance_id and r["message_id"] == message_id), None)

    def _unlog(self, queue_id: str) -> None:
        self._send_log = [r for r in self._send_log if r["queue_id"] != queue_id]

    def _add_events(self, events: Sequence[EventDraft], now: int) -> None:
        for e in events:
            seq = next(self._seq)
            self._events[seq] = {
                "seq": seq, "event_id": e.event_id, "instance_id": e.instance_id, "event": e.event,
                "body": e.body, "status": "pending", "attempts": 0, "next_attempt_at": now,
                "created_at": now, "delivered_at": None, "last_error": None, "last_status_code": None}
