"""Figures of many instances at once in memory (fleet port)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wahub.store.memory.state import MemoryBase
from wahub.store.records import FleetFigures


class FleetMemory(MemoryBase):
    """Aggregate reads over many instances (fleet port)."""

    async def fleet_figures(self, instance_ids: Sequence[str] | None, *, sent_since: int) -> dict[str, FleetFigures]:
        """Figures of many instances (None: all); instances with nothing recorded are absent."""
        wanted = None if instance_ids is None else set(instance_ids)
        acc: dict[str, dict[str, Any]] = {}

        def fig(instance_id: str) -> dict[str, Any] | None:
            if wanted is not None and instance_id not in wanted:
                return None
            return acc.setdefault(instance_id, {"by_status": {}, "oldest_open_at": None, "sent": 0,
                                                "events_pending": 0, "events_dead": 0})

        for r in self._outbox.values():
            f = fig(r["instance_id"])
            if f is None:
                continue
            f["by_status"][r["status"]] = f["by_status"].get(r["status"], 0) + 1
            if r["status"] in ("queued", "sending"):
                oldest = f["oldest_open_at"]
                f["oldest_open_at"] = r["created_at"] if oldest is None else min(oldest, r["created_at"])
        for r in self._send_log:
            if r["at"] > sent_since and (f := fig(r["instance_id"])) is not None:
                f["sent"] += 1
        for r in self._events.values():
            if r["status"] in ("pending", "dead") and (f := fig(r["instance_id"])) is not None:
                f["events_pending" if r["status"] == "pending" else "events_dead"] += 1
        return {k: FleetFigures(**v) for k, v in acc.items()}
