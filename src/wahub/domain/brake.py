"""A per-client brake on failed credentials (wrong API keys, failed dashboard logins).

A leaky bucket per client address: each failure adds one; the bucket drains one every
:data:`REFILL_MS`; a client whose bucket holds :data:`BURST` failures is refused (429 with
``Retry-After``) on every authenticated request — right key or wrong — until it has drained below
that. A person who mistypes gets ten tries at once and one more every six seconds; a guesser gets
ten a minute instead of hundreds a second. The API key and the dashboard login guess the same
secret, so they share one brake. Only failures count: a client that keeps sending the right key is
never slowed.

Pure: the caller passes ``now_ms``; at most :data:`MAX_CLIENTS` buckets are kept (the fullest win).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BURST = 10
REFILL_MS = 6_000
MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    level: float
    at_ms: int


class FailureBrake:
    """Failure counts per client; :meth:`retry_after_s` says whether a client must wait."""

    def __init__(self, burst: int = BURST, refill_ms: int = REFILL_MS, max_clients: int = MAX_CLIENTS) -> None:
        self.burst = burst
        self.refill_ms = refill_ms
        self.max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    def _level(self, client: str, now_ms: int) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        level = max(0.0, bucket.level - max(0, now_ms - bucket.at_ms) / self.refill_ms)
        if level == 0.0:
            del self._buckets[client]
        return level

    def retry_after_s(self, client: str, now_ms: int) -> int:
        """Seconds ``client`` must wait before its credentials are looked at again; 0 when it may try now."""
        excess = self._level(client, now_ms) - (self.burst - 1)
        return 0 if excess <= 0 else max(1, math.ceil(excess * self.refill_ms / 1000))

    def failed(self, client: str, now_ms: int) -> bool:
        """Count one failure of ``client`` (made while it was allowed to try); True when it closed the brake."""
        level = self._level(client, now_ms) + 1
        self._buckets[client] = _Bucket(level, now_ms)
        if len(self._buckets) > self.max_clients:
            emptiest = min(self._buckets, key=lambda c: self._buckets[c].level)
            del self._buckets[emptiest]
        return self.retry_after_s(client, now_ms) > 0
