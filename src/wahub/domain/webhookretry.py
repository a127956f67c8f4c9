"""Webhook retry classification (DESIGN §4): which attempt results are retried, and when.

2xx delivered; network errors, 401, 403, 408, 429 (honouring ``Retry-After``) and 5xx retried;
any other status is a dead letter at once; a response timeout is retried once, a second one is dead.

401 and 403 are retried because they usually come from a protection layer in front of the
receiver (a deployment's access protection, an expired bypass token, a proxy rotating
credentials), not from the receiver judging the event: the event is retried with backoff until
``WEBHOOK_MAX_ATTEMPTS`` and then dead-lettered, replayable once the access is fixed.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

RESPONSE_TIMEOUT = "response timeout"
RETRIED_STATUSES = frozenset({401, 403, 408, 429})  # plus every 5xx


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: delivered, retry (with an optional server-chosen delay), or dead."""

    kind: str  # "delivered" | "retry" | "dead"
    status_code: int | None
    error: str | None
    retry_after_ms: int | None = None



def classify(status_code: int | None, error: str | None, retry_after: str | None, now_ms: int, *,
             response_timeout: bool = False, previous_response_timeout: bool = False) -> Outcome:
    """Map one attempt's result to an :class:`Outcome` (DESIGN §4 retry rules).

    ``response_timeout``: the request was sent but no answer came in time;
    ``previous_response_timeout``: the event's previous attempt ended the same way (then dead).
    """
    if response_timeout:
        kind = "dead" if previous_response_timeout else "retry"
        return Outcome(kind, None, error or RESPONSE_TIMEOUT)
    if status_code is None:
        return Outcome("retry", None, error or "network error")
    if 200 <= status_code < 300:
        return Outcome("delivered", status_code, None)
    if status_code in RETRIED_STATUSES or status_code >= 500:
        return Outcome("retry", status_code, f"HTTP {status_code}", _retry_after_ms(retry_after, now_ms))
    return Outcome("dead", status_code, f"HTTP {status_code} (not retried)")


def _retry_after_ms(value: str | None, now_ms: int) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(when.timestamp() * 1000) - now_ms)
