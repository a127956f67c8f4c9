"""An ``EventSink`` that records engine events and lets tests wait for one (with a deadline)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from wahub.engines import base


class Recorder:
    """Collects events; :meth:`wait_for` returns the first matching one or fails after ``timeout_s``."""

    def __init__(self) -> None:
        self.events: list[base.EngineEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: base.EngineEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, cls: type[Any]) -> list[Any]:
        """Recorded events of one class."""
        return [e for e in self.events if isinstance(e, cls)]

    async def wait_for(self, cls: type[Any], where: Callable[[Any], bool] = lambda e: True, *,
                       after: int = 0, timeout_s: float = 20.0) -> Any:
        """The first event of ``cls`` at index ≥ ``after`` matching ``where``."""
        async def scan() -> Any:
            while True:
                for e in self.events[after:]:
                    if isinstance(e, cls) and where(e):
                        return e
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"no {cls.__name__} within {timeout_s}s; got {self.events!r}") from None
