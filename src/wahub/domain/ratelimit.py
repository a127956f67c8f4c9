"""Rolling-window send limits and pacing as pure functions of (send history, now).

A window of length W holds two sends together when they are less than W ms apart, so "at
most N in any rolling W" means: a new send at ``t`` needs the N-th most recent send at or
before ``t - W``. History comes from the persisted send log, so restarts cannot reset it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Limits:
    """Per-instance limits: sends per rolling minute and hour, and the gap between sends (ms)."""

    per_minute: int
    per_hour: int
    interval_ms: int


@dataclass(frozen=True)
class Decision:
    """When the next send may happen (epoch ms) and which rule decided it."""

    at_ms: int
    reason: str  # "now" | "interval" | "minute_limit" | "hour_limit"


def next_allowed(history_ms: Sequence[int], now_ms: int, limits: Limits, jitter_ms: int = 0) -> Decision:
    """Earliest time >= ``now_ms`` at which one more send respects every limit.

    ``history_ms`` are epoch-ms times of earlier sends (any order; only the last hour matters).
    ``jitter_ms`` (>= 0) is added to the pacing interval only. A send time later than ``now_ms``
    (the wall clock went backwards) is treated as ``now_ms`` so a clock jump cannot stall the
    outbox for longer than one window.
    """
    times = sorted(min(t, now_ms) for t in history_ms if t > now_ms - HOUR_MS)
    best = Decision(now_ms, "now")
    if times:
        gap = times[-1] + limits.interval_ms + jitter_ms
        if gap > best.at_ms:
            best = Decision(gap, "interval")
    for count, window, reason in ((limits.per_minute, MINUTE_MS, "minute_limit"),
                                  (limits.per_hour, HOUR_MS, "hour_limit")):
        if count <= 0:
            continue
        if len(times) >= count:
            t = times[-count] + window
            if t > best.at_ms:
                best = Decision(t, reason)
    return best


def usage(history_ms: Sequence[int], now_ms: int) -> tuple[int, int]:
    """Sends in the rolling minute and hour ending at ``now_ms``: (last_minute, last_hour)."""
    minute = sum(1 for t in history_ms if now_ms - MINUTE_MS < t <= now_ms)
    hour = sum(1 for t in history_ms if now_ms - HOUR_MS < t <= now_ms)
    return minute, hour


def max_in_any_window(times_ms: Sequence[int], window_ms: int) -> int:
    """Largest number of sends within any window of ``window_ms`` (used by tests and checks)."""
    ordered = sorted(times_ms)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best
