"""The outbox in memory: enqueue, claim, hand-over, outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wahub.domain.outbox import ItemKind, OutboxItem
from wahub.domain.outbox import ItemStatus as St
from wahub.store.base import QueueFullSignal
from wahub.store.memory.state import _OPEN, UNCERTAIN_ERROR, MemoryBase, Row, _item
from wahub.store.records import (
    EventDraft,
    PollRecord,
    dump_json,
)


class OutboxMemory(MemoryBase):
    """The outbox in memory: enqueue, claim, hand-over, outcomes."""

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
    async def claim_next(self, instance_id: str, now: int, *, hand_over: bool = False,
                         chosen_message_id: str | None = None) -> OutboxItem | None:
        """Move the first due queued item (FIFO by enqueue order) to ``sending`` and return it.

        None when nothing is due or an item of the instance is already ``sending``. With
        ``hand_over`` it is also marked handed over at ``now`` (as :meth:`mark_handed_over`).
        """
        self._fence(instance_id)
        mine = [r for r in self._outbox.values() if r["instance_id"] == instance_id]
        if any(r["status"] == St.SENDING.value for r in mine):
            return None
        for row in mine:  # seq order
            if row["status"] == St.QUEUED.value and row["next_attempt_at"] <= now:
                row.update(status=St.SENDING.value, updated_at=now)
                if hand_over:
                    row.update(handed_over_at=now, chosen_message_id=chosen_message_id)
                    self._send_log.append({"id": next(self._seq), "instance_id": instance_id, "at": now,
                                           "queue_id": row["queue_id"]})
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
        self._fence(self._outbox[seq]["instance_id"] if seq in self._outbox else None)
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
        self._fence(item.instance_id)
        row = self._outbox.get(item.seq)
        if row is not None:
            row.update(handed_over_at=now, updated_at=now, chosen_message_id=chosen_message_id)
        self._send_log.append({"id": next(self._seq), "instance_id": item.instance_id, "at": now,
                               "queue_id": item.queue_id})

    async def take_back_hand_over(self, item: OutboxItem) -> None:
        """Undo the hand-over of a still-``sending`` item whose engine call was not made."""
        self._fence(item.instance_id)
        row = self._outbox.get(item.seq)
        if row is not None and row["status"] == St.SENDING.value:
            row.update(handed_over_at=None, chosen_message_id=None)
        self._unlog(item.queue_id)

    async def stamp_send(self, queue_id: str, at: int) -> None:
        """Set the logged time of the item's send to the engine-call instant ``at``."""
        self._fence(next((r["instance_id"] for r in self._outbox.values() if r["queue_id"] == queue_id), None))
        for r in self._send_log:
            if r["queue_id"] == queue_id:
                r["at"] = at

    async def latest_send_at(self) -> int | None:
        """The newest send instant of any instance (epoch ms), or None."""
        return max((r["at"] for r in self._send_log), default=None)

    async def mark_sent(self, item: OutboxItem, *, message_id: str, now: int, sent_at: int | None = None,
                        events: Sequence[EventDraft] = (), from_statuses: Sequence[str] = (St.SENDING.value,)) -> bool:
        """Record a successful send (and, for a poll, the poll itself) while in ``from_statuses``; the send
        loop's own outcome (``from_statuses`` without ``uncertain``) also stamps the send log with ``sent_at``."""
        self._fence(item.instance_id)
        if sent_at is not None and St.UNCERTAIN.value not in from_statuses:
            for r in self._send_log:
                if r["queue_id"] == item.queue_id:
                    r["at"] = sent_at
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
        self._fence(item.instance_id)
        row = self._outbox.get(item.seq)
        if row is not None:
            row.update(status=St.FAILED.value, last_error=error, error_reason=reason, updated_at=now)
            if count_attempt:
                row["attempts"] += 1
        if unlog:
            self._unlog(item.queue_id)
        self._add_events(events, now)

    async def recover_in_flight(self, now: int) -> tuple[int, list[OutboxItem]]:
        """Start-up recovery (as :meth:`SqlStore.recover_in_flight`): ``sending`` items never handed
        over → ``queued``, else ``uncertain``; returns ``(requeued, unreported_uncertain_items)``."""
        requeued = 0
        for row in self._outbox.values():
            if row["status"] != St.SENDING.value:
                continue
            if row["handed_over_at"] is None:
                row.update(status=St.QUEUED.value, updated_at=now)
                requeued += 1
            else:
                row.update(status=St.UNCERTAIN.value, updated_at=now, last_error=UNCERTAIN_ERROR,
                           error_reason="uncertain")
        uncertain = [_item(r) for r in self._outbox.values()
                     if r["status"] == St.UNCERTAIN.value and r.get("uncertain_reported_at") is None]
        return requeued, uncertain

    async def mark_uncertain_reported(self, queue_id: str, now: int, events: Sequence[EventDraft]) -> bool:
        """Store ``message_uncertain`` once for a still-``uncertain`` item (False: not stored)."""
        row = next((r for r in self._outbox.values() if r["queue_id"] == queue_id), None)
        if row is None or row["status"] != St.UNCERTAIN.value or row.get("uncertain_reported_at") is not None:
            return False
        row["uncertain_reported_at"] = now
        self._add_events(events, now)
        return True
