"""Whether the store can write right now: one hub-wide fault shown in /status, /ready and metrics.

The SQL store reports every failed write (locked, disk full, I/O error, gone) and the next
successful one; see ``SqlBase.watch_faults``.
"""

from __future__ import annotations

from typing import Any

import structlog

from wahub.domain.clock import Clock
from wahub.observability import Metrics

log = structlog.get_logger("wahub.store")


class StoreHealth:
    """The current store fault: ``{"since": epoch ms, "reason": str}`` or None."""

    def __init__(self, clock: Clock, metrics: Metrics) -> None:
        self.clock = clock
        self.metrics = metrics
        self.fault: dict[str, Any] | None = None

    def report(self, reason: str | None) -> None:
        """A write failed (``reason``) or succeeded (None)."""
        if reason is None:
            if self.fault is not None:
                log.info("store_recovered", down_ms=self.clock.now_ms() - self.fault["since"])
                self.fault = None
                self.metrics.store_fault.set(0)
            return
        if self.fault is None:
            log.error("store_fault", reason=reason)
            self.fault = {"since": self.clock.now_ms(), "reason": reason}
            self.metrics.store_fault.set(1)
        else:
            self.fault["reason"] = reason
