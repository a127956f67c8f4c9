"""Engine events the store could not take: held in order, retried until stored, never dropped.

While the store is failing (locked, disk full, unreachable) an instance's engine events wait in a
bounded in-order queue and are retried every ``retry_ms``; when the queue is full the engine's
sink waits (back-pressure) instead of dropping. The ``wahub_engine_events_held`` gauge counts
them and each fault and recovery is logged once.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

import structlog

from wahub.domain.clock import Clock
from wahub.domain.errors import StoreError
from wahub.engines import base as eng
from wahub.observability import Metrics

log = structlog.get_logger("wahub.eventhold")

HOLD_LIMIT = 10_000  # events held per instance before the engine's sink waits
RETRY_MS = 500  # wait between retries of the oldest held event

Handler = Callable[[eng.EngineEvent], Awaitable[None]]


class EventHold:
    """One instance's held engine events; :meth:`deliver` stores one event or holds it behind the others."""

    def __init__(self, instance_id: str, clock: Clock, metrics: Metrics, *, limit: int = HOLD_LIMIT,
                 retry_ms: int = RETRY_MS) -> None:
        self.instance_id = instance_id
        self.clock = clock
        self.metrics = metrics
        self.limit = limit
        self.retry_ms = retry_ms
        self._held: collections.deque[tuple[eng.EngineEvent, Handler]] = collections.deque()
        self._space = asyncio.Condition()
        self._drainer: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """How many events wait for the store."""
        return len(self._held)

    async def deliver(self, event: eng.EngineEvent, handle: Handler) -> None:
        """Run ``handle(event)``; when the store fails (or events are already held) hold it, in order."""
        if not self._held:
            try:
                await handle(event)
                return
            except StoreError as exc:
                log.warning("engine_event_held", instance_id=self.instance_id, engine_event=type(event).__name__,
                            error=str(exc))
        async with self._space:
            await self._space.wait_for(lambda: len(self._held) < self.limit)
            self._held.append((event, handle))
            self.metrics.held_events.inc()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        retries = 0
        while self._held:
            event, handle = self._held[0]
            try:
                await handle(event)
            except StoreError:
                retries += 1
                self.metrics.store_retries.inc()
                await self.clock.sleep(self.retry_ms)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine_event_error", instance_id=self.instance_id, engine_event=type(event).__name__)
            self._held.popleft()
            self.metrics.held_events.dec()
            async with self._space:
                self._space.notify_all()
        log.info("engine_events_stored_after_store_fault", instance_id=self.instance_id, retries=retries)

    def stop(self) -> None:
        """Stop retrying (instance deleted or hub stopping); what is still held is lost with the process."""
        if self._drainer is not None:
            self._drainer.cancel()
        if self._held:
            log.warning("engine_events_abandoned", instance_id=self.instance_id, held=len(self._held))
