"""Waiting for a condition in async tests that talk to real I/O (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``fn()`` (blocking) until it returns a truthy value; returns it. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


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
