"""Clocks: the system clock, and a fake one that tests advance by hand."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class SystemClock:
    """Wall time for timestamps; asyncio's monotonic timer for waiting (so jumps do not burst)."""

    def now_ms(self) -> int:
        """Current epoch milliseconds."""
        return time.time_ns() // 1_000_000

    async def sleep(self, ms: float) -> None:
        """Wait ``ms`` milliseconds on the monotonic loop timer."""
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
