"""Named one-shot timers of one instance's supervisor (watchdog, backoff, QR window, ...) on the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from wahub.domain.clock import Clock

log = structlog.get_logger("wahub.supervisor")


class Timers:
    """At most one pending timer per name; arming a name again replaces it."""

    def __init__(self, clock: Clock, instance_id: str) -> None:
        self.clock = clock
        self.instance_id = instance_id
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def arm(self, name: str, ms: int, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn()`` after ``ms`` (clock ms), replacing a pending timer of that name."""
        self.cancel(name)

        async def fire() -> None:
            structlog.contextvars.clear_contextvars()
            await self.clock.sleep(ms)
            self._tasks.pop(name, None)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor_timer_error", instance_id=self.instance_id, timer=name)

        self._tasks[name] = asyncio.ensure_future(fire())

    def armed(self, name: str) -> bool:
        """Whether a timer of that name is pending."""
        return name in self._tasks

    def cancel(self, name: str) -> None:
        """Cancel the timer of that name, if pending (never the running one itself)."""
        task = self._tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def cancel_all(self) -> None:
        """Cancel every pending timer."""
        for name in list(self._tasks):
            self.cancel(name)

    def pending(self) -> list[asyncio.Task[None]]:
        """The pending timer tasks other than the current one (to await after cancelling)."""
        return [t for t in self._tasks.values() if t is not asyncio.current_task()]
