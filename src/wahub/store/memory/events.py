"""Webhook events in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wahub.store.memory.state import MemoryBase, _event
from wahub.store.records import (
    EventDraft,
    EventRecord,
)


class EventsMemory(MemoryBase):
    """Webhook events in memory."""

    # -- webhook events -------------------------------------------------------------------------
    async def add_events(self, events: Sequence[EventDraft], now: int) -> None:
        """Store events for delivery."""
        self._add_events(events, now)

    async def get_event(self, instance_id: str, event_id: str) -> EventRecord | None:
        """One webhook event of an instance with its stored body and last response, or None."""
        row = next((r for r in self._events.values()
                    if r["instance_id"] == instance_id and r["event_id"] == event_id), None)
        return _event(row) if row else None

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

    async def pending_events(self, instance_id: str, limit: int) -> list[EventRecord]:
        """Up to ``limit`` pending events of an instance, oldest first."""
        out: list[EventRecord] = []
        for row in self._events.values():
            if row["instance_id"] == instance_id and row["status"] == "pending":
                out.append(_event(row))
                if len(out) >= limit:
                    break
        return out

    async def events_delivered(self, marks: Sequence[tuple[int, int, int]]) -> None:
        """Mark events delivered in one transaction: ``(seq, delivered_at ms, status_code)`` each."""
        for seq, at, code in marks:
            await self.event_delivered(seq, now=at, status_code=code)

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
