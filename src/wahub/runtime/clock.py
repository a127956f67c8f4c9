"""Clocks: the system clock, and a fake one that tests advance by hand."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from wahub.domain.clock import Clock


class SystemClock:
    """Epoch time that does not jump while the process runs: the wall clock read once at start,
    plus monotonic elapsed time since then. Waiting uses asyncio's monotonic loop timer.

    A wall-clock step while running (NTP, an operator) therefore neither opens the rate windows
    early (forward step) nor stalls the outbox (backward step). Across a restart, the hub raises
    the clock to the newest persisted send instant (:meth:`raise_floor`), so a backward step costs
    at most one interval. ``wall_ns``/``mono_ns``/``sleeper`` are seams for tests.
    """

    def __init__(self, *, wall_ns: Callable[[], int] = time.time_ns, mono_ns: Callable[[], int] = time.monotonic_ns,
                 sleeper: Callable[[float], Awaitable[None]] | None = None) -> None:
        self._mono_ns = mono_ns
        self._base_ms = wall_ns() // 1_000_000
        self._mono0 = mono_ns()
        self._sleeper = sleeper

    def now_ms(self) -> int:
        """Current epoch milliseconds (start wall time + monotonic elapsed)."""
        return self._base_ms + (self._mono_ns() - self._mono0) // 1_000_000

    def raise_floor(self, at_ms: int) -> None:
        """Never report a time before ``at_ms`` from now on (moves the clock forward only)."""
        behind = at_ms - self.now_ms()
        if behind > 0:
            self._base_ms += behind

    async def sleep(self, ms: float) -> None:
        """Wait ``ms`` milliseconds on the monotonic loop timer."""
        if self._sleeper is not None:
            await self._sleeper(ms)
            return
        await asyncio.sleep(max(0.0, ms) / 1000)


class FakeClock:
    """A clock that only moves when :meth:`advance` is awaited; sleepers wake in time order."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        """The fake current time, epoch ms."""
        return self._now

    async def sleep(self, ms: float) -> None:
        """Wait until the fake time has moved ``ms`` forward."""
        if ms <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + int(ms), next(self._seq), fut))
        await fut

    def raise_floor(self, at_ms: int) -> None:
        """Move the fake time forward to ``at_ms`` if it is behind (see :meth:`SystemClock.raise_floor`)."""
        self._now = max(self._now, at_ms)

    def pending(self) -> int:
        """Number of sleepers not yet woken."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, ms: int, settle: object = None) -> None:
        """Move time forward by ``ms``, waking each sleeper at its own time and letting it run."""
        target = self._now + ms
        await _settle(settle)
        while self._sleepers and self._sleepers[0][0] <= target:
            at, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, at)
            if not fut.done():
                fut.set_result(None)
            await _settle(settle)
        self._now = target
        await _settle(settle)


async def _settle(settle: object) -> None:
    if callable(settle):
        result = settle()
        if asyncio.iscoroutine(result):
            await result
        return
    for _ in range(20):
        await asyncio.sleep(0)


async def sleep_or_wake(clock: Clock, ms: float | None, wake: asyncio.Event) -> None:
    """Wait ``ms`` milliseconds on ``clock`` (None: no time limit) or until ``wake`` is set, whichever
    comes first; returns at once when ``wake`` is already set. ``wake`` is left as it is."""
    waiter = asyncio.ensure_future(wake.wait())
    waits: set[asyncio.Future[Any]] = {waiter}
    if ms is not None:
        waits.add(asyncio.ensure_future(clock.sleep(ms)))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
