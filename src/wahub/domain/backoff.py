"""Retry schedules as pure functions; randomness comes in as a number in [0, 1)."""

from __future__ import annotations


def exponential(attempt: int, base_ms: int, cap_ms: int, rand: float) -> int:
    """Delay (ms) before retry number ``attempt`` (1-based), with "equal jitter".

    The un-jittered delay is ``min(cap, base * 2**(attempt-1))``; the result lies in
    ``[d/2, d)`` so retries spread out yet still grow. ``rand`` must be in [0, 1).
    """
    if attempt < 1:
        attempt = 1
    raw = min(cap_ms, base_ms * (2 ** min(attempt - 1, 40)))
    half = raw / 2
    return int(half + half * rand)
