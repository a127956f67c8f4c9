"""Outbox queries and operator actions in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem
from wahub.domain.outbox import ItemStatus as St
from wahub.store.memory.state import _FINAL_PURGEABLE, _OPEN, MemoryBase, Row, _item
from wahub.store.records import (
    EventDraft,
    QueueStats,
    dump_json,
)


class ItemsMemory(MemoryBase):
    """Outbox queries and operator actions in memory."""

    async def insert_sent_item(self, *, queue_id: str, instance_id: str, idempotency_key: str, key_source: str,
                               kind: str, chat_id: str, payload: dict[str, Any], fingerprint: str, message_id: str,
                               created_at: int, sent_at: int) -> bool:
        """Store an item that was already sent elsewhere (``sent``, with its message id) in one step.

        For moving records from another system: nothing is logged as a send (no rate-limit
        history), no webhook event is stored. Returns False (and changes nothing) when the key
        is already taken on the instance.
        """
        if self._by_key(instance_id, idempotency_key) is not None:
            return False
        seq = next(self._seq)
        row: Row = {
            "seq": seq, "queue_id": queue_id, "instance_id": instance_id, "idempotency_key": idempotency_key,
            "key_source": key_source, "kind": ItemKind(kind).value, "chat_id": chat_id,
            "payload": dump_json(payload), "fingerprint": fingerprint, "status": St.SENT.value, "attempts": 1,
            "next_attempt_at": created_at, "created_at": created_at, "updated_at": sent_at, "handed_over_at": None,
            "sent_at": sent_at, "message_id": message_id, "ack": None, "last_error": None, "error_reason": None,
            "chosen_message_id": None,
        }
        self._outbox[seq] = row
        return True

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
        before = len(self._outbox_retired)
        self._outbox_retired = [r for r in self._outbox_retired if r["updated_at"] >= older_than]
        out["outbox_retired"] = before - len(self._outbox_retired)
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
