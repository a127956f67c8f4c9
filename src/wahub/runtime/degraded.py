"""Zombie-session watch: an instance that sends but never hears a server ack or receipt is degraded.

The rule is :func:`wahub.domain.lifecycle.degraded_reason`. Entering the condition raises the
``wahub_instance_degraded`` gauge, logs once and stores one ``degraded`` webhook event; the next
receipt of any kind clears it. The state does not change: the connection may still work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from wahub.domain import lifecycle
from wahub.domain.clock import Clock
from wahub.observability import Metrics
from wahub.runtime.events import Events
from wahub.runtime.registry import InstanceRuntime

log = structlog.get_logger("wahub.degraded")


class DegradedWatch:
    """Counts one instance's sends since its last receipt; ``state`` is ``{since, reason}`` or None."""

    def __init__(self, rt: InstanceRuntime, clock: Clock, events: Events, metrics: Metrics, *,
                 after_sends: int, after_ms: int) -> None:
        self.rt = rt
        self.clock = clock
        self.events = events
        self.metrics = metrics
        self.after_sends = after_sends
        self.after_ms = after_ms
        self.unacked = 0
        self.first_unacked_at: int | None = None
        self.state: dict[str, Any] | None = None
        self._timer: asyncio.Task[None] | None = None

    async def sent(self, at: int) -> None:
        """The engine accepted a send at ``at`` (epoch ms)."""
        self.unacked += 1
        if self.first_unacked_at is None:
            self.first_unacked_at = at
            if self.after_ms:
                self._arm(self.after_ms)
        await self._check()

    def receipt(self) -> None:
        """A server ack or receipt arrived: the session is alive."""
        self.unacked = 0
        self.first_unacked_at = None
        self.stop()
        if self.state is not None:
            log.info("degraded_cleared", instance_id=self.rt.id)
            self.state = None
            self.metrics.degraded.labels(self.rt.id).set(0)

    def stop(self) -> None:
        """Cancel the pending timer (receipt, deletion or hub stop)."""
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None

    def _arm(self, ms: int) -> None:
        self.stop()

        async def fire() -> None:
            await self.clock.sleep(ms)
            self._timer = None
            try:
                await self._check()
            except Exception:
                log.exception("degraded_check_failed", instance_id=self.rt.id)

        self._timer = asyncio.ensure_future(fire())

    async def _check(self) -> None:
        if self.state is not None:
            return
        now = self.clock.now_ms()
        reason = lifecycle.degraded_reason(self.unacked, self.first_unacked_at, now, self.after_sends, self.after_ms)
        if reason is None:
            return
        self.state = {"since": now, "reason": reason}
        self.metrics.degraded.labels(self.rt.id).set(1)
        log.warning("degraded", instance_id=self.rt.id, reason=reason, unacked=self.unacked)
        await self.events.emit(self.rt.record, "degraded", {"degraded": True, "since": now, "reason": reason,
                                                            "unackedSends": self.unacked})
