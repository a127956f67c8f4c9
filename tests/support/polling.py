"""Waiting for a condition in async tests that talk to real I/O (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(fn: Callable[[], Awaitable[T]], within_s: float = 15.0, interval_s: float = 0.02) -> T:
    """Poll ``await fn()`` until it returns a truthy value and return it. Raises TimeoutError."""
    deadline = time.monotonic() + within_s
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval_s)
