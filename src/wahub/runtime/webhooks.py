"""Durable webhook delivery (DESIGN §4).

Events are rows in ``webhook_events``, written in the same transaction as the change that
caused them. The dispatcher runs one *lane* per instance: a lane delivers that instance's
pending events strictly in order (the head must be delivered or dead-lettered before the next
one goes), so receivers see events in the order they happened; lanes of different instances
run concurrently. A per-URL semaphore caps requests in flight to one receiver. Nothing here is
awaited by the send loop or the lifecycle: they only store events and call :meth:`notify`.

Retry policy (pure, in :func:`wahub.domain.webhookretry.classify`): 2xx delivered; network errors (refused, reset,
connect timeout), 401/403 (a protection layer in front of the receiver), 408, 429 (honouring
``Retry-After``) and 5xx retried with exponential backoff and jitter; any other status (other 4xx,
3xx: redirects are not followed) is a dead letter at once; after ``WEBHOOK_MAX_ATTEMPTS`` attempts
the event is dead.

Headers: besides the signatures (:func:`wahub.runtime.signing.headers`), every attempt carries
``x-vercel-protection-bypass`` when ``WEBHOOK_PROTECTION_BYPASS`` is set, as the existing wa-hub
did, so a receiver behind Vercel deployment protection accepts the events.

Response timeouts are special: the receiver accepted the connection and the whole body, so it
has probably processed the event and is merely slow to answer. Retrying such an event again and
again would hand a slow receiver a stream of duplicates, so a response timeout is retried once
(same ``webhook-id``, same body, so the receiver can drop the copy) and a second consecutive one
makes the event a dead letter, replayable once the receiver is fixed. ``WEBHOOK_TIMEOUT_MS``
bounds each phase of a request (connect, send, wait for the response), not the sum.

Delivery is at least once: an attempt cut short by a crash or shutdown is not recorded and is
made again after the restart with the same event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from wahub.domain import backoff
from wahub.domain.clock import Clock
from wahub.domain.webhookretry import RESPONSE_TIMEOUT, classify
from wahub.runtime import signing
from wahub.store.base import EventsPort
from wahub.store.records import EventRecord

log = structlog.get_logger("wahub.webhooks")
PROTECTION_BYPASS_HEADER = "x-vercel-protection-bypass"

@dataclass(frozen=True)
class Target:
    """Where and how one instance's events are delivered."""

    url: str | None
    secret: str | None


@dataclass(frozen=True)
class DispatchPolicy:
    """Timeouts and retry schedule (ms)."""

    timeout_ms: int
    base_ms: int
    max_ms: int
    max_attempts: int
    max_in_flight_per_url: int
    auth_token: str | None
    protection_bypass: str | None = None  # sent as x-vercel-protection-bypass when set


@dataclass
class LaneHealth:
    """What the last attempts of one instance's lane looked like since the process started (ms)."""

    last_attempt_at: int | None = None
    last_success_at: int | None = None
    last_error: str | None = None
    last_error_at: int | None = None
    last_status_code: int | None = None
    consecutive_failures: int = 0


class Dispatcher:
    """Delivers stored events: ordered per instance, concurrent across instances."""

    def __init__(self, store: EventsPort, clock: Clock, policy: DispatchPolicy,
                 target_for: Callable[[str], Target | None], *, rng: random.Random | None = None,
                 client: httpx.AsyncClient | None = None,
                 on_attempt: Callable[[str, str, float], None] | None = None,
                 owns: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.owns = owns or (lambda _iid: True)  # several nodes: lanes run on the instance's owner only
        self.clock = clock
        self.policy = policy
        self.target_for = target_for
        self.rng = rng or random.Random()
        self.client = client or httpx.AsyncClient(timeout=policy.timeout_ms / 1000, follow_redirects=False)
        self._own_client = client is None
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._url_slots: dict[str, asyncio.Semaphore] = {}
        self._health: dict[str, LaneHealth] = {}
        self._on_attempt = on_attempt
        self._closed = False

    async def start(self) -> None:
        """Start lanes for every instance with undelivered events (after a restart too)."""
        for instance_id in await self.store.instances_with_pending_events():
            self.notify(instance_id)

    def notify(self, instance_id: str) -> None:
        """New events were stored for ``instance_id``: wake or start its lane."""
        if self._closed or not self.owns(instance_id):
            return
        wake = self._wakes.setdefault(instance_id, asyncio.Event())
        wake.set()
        lane = self._lanes.get(instance_id)
        if lane is None or lane.done():
            self._lanes[instance_id] = asyncio.ensure_future(self._lane(instance_id))

    def health(self, instance_id: str) -> LaneHealth | None:
        """Attempts of ``instance_id``'s lane since the process started, or None when none was made."""
        return self._health.get(instance_id)

    def forget(self, instance_id: str) -> None:
        """Drop the lane and its health (instance deleted); its stored events are gone too."""
        lane = self._lanes.pop(instance_id, None)
        if lane is not None:
            lane.cancel()
        self._wakes.pop(instance_id, None)
        self._health.pop(instance_id, None)

    async def close(self) -> None:
        """Stop every lane; undelivered events stay stored for the next start."""
        self._closed = True
        for task in self._lanes.values():
            task.cancel()
        for task in self._lanes.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._own_client:
            await self.client.aclose()

    async def _lane(self, instance_id: str) -> None:
        structlog.contextvars.clear_contextvars()
        wake = self._wakes[instance_id]
        while not self._closed and self.owns(instance_id):
            wake.clear()
            try:
                head = await self.store.head_event(instance_id)
                if head is None:
                    if wake.is_set():
                        continue  # an event was stored while we looked: do not lose the wake-up
                    return
                now = self.clock.now_ms()
                if head.next_attempt_at > now:
                    await self._wait(wake, head.next_attempt_at - now)
                    continue
                await self._attempt(head)
            except asyncio.CancelledError:
                raise
            except Exception:  # a lane must survive anything; the event stays pending
                log.exception("webhook_lane_error", instance_id=instance_id)
                await self._wait(wake, self.policy.base_ms)

    async def _wait(self, wake: asyncio.Event, ms: int) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(ms))
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    async def _attempt(self, ev: EventRecord) -> None:
        target = self.target_for(ev.instance_id)
        now = self.clock.now_ms()
        if target is None or not target.url:
            missing = "no webhook URL configured"
            await self.store.event_failed(ev.seq, now=now, next_attempt_at=self._next_at(ev, now, None),
                                          error=missing, status_code=None)
            health = self._health.setdefault(ev.instance_id, LaneHealth())
            health.last_attempt_at = health.last_error_at = now
            health.last_error, health.last_status_code = missing, None
            health.consecutive_failures += 1
            return
        body = ev.body.encode("utf-8")
        headers = signing.headers(secret=target.secret, auth_token=self.policy.auth_token,
                                  event_id=ev.event_id, timestamp_s=now // 1000, body=body)
        if self.policy.protection_bypass:
            headers[PROTECTION_BYPASS_HEADER] = self.policy.protection_bypass
        slot = self._url_slots.setdefault(target.url, asyncio.Semaphore(self.policy.max_in_flight_per_url))
        status: int | None = None
        error: str | None = None
        retry_after: str | None = None
        response_timeout = False
        async with slot:
            started = self.clock.now_ms()
            try:
                resp = await self.client.post(target.url, content=body, headers=headers,
                                              timeout=self.policy.timeout_ms / 1000)
                status = resp.status_code
                retry_after = resp.headers.get("retry-after")
            except httpx.ReadTimeout:
                response_timeout = True
                error = f"{RESPONSE_TIMEOUT}: no answer within {self.policy.timeout_ms} ms"
            except httpx.TimeoutException as exc:  # connect/write/pool: the receiver did not get the event
                error = f"{exc.__class__.__name__}: no progress within {self.policy.timeout_ms} ms"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:300]
        now = self.clock.now_ms()
        previous_timeout = ev.attempts > 0 and (ev.last_error or "").startswith(RESPONSE_TIMEOUT)
        outcome = classify(status, error, retry_after, now, response_timeout=response_timeout,
                           previous_response_timeout=previous_timeout)
        next_at = self._next_at(ev, now, outcome.retry_after_ms) if outcome.kind == "retry" else None
        # The attempt's outcome as counted: a retryable failure with no attempt left is a dead letter.
        counted = "dead" if outcome.kind == "retry" and next_at is None else outcome.kind
        if self._on_attempt is not None:
            self._on_attempt(ev.instance_id, counted, (now - started) / 1000)
        health = self._health.setdefault(ev.instance_id, LaneHealth())
        health.last_attempt_at = now
        if outcome.kind == "delivered":
            await self.store.event_delivered(ev.seq, now=now, status_code=status or 200)
            health.last_success_at = now
            health.consecutive_failures = 0
            log.debug("webhook_delivered", instance_id=ev.instance_id, event_id=ev.event_id,
                      webhook_event=ev.event)
            return
        health.last_error, health.last_error_at, health.last_status_code = outcome.error, now, status
        health.consecutive_failures += 1
        await self.store.event_failed(ev.seq, now=now, next_attempt_at=next_at,
                                      error=outcome.error or "failed", status_code=status)
        log.warning("webhook_attempt_failed", instance_id=ev.instance_id, event_id=ev.event_id,
                    webhook_event=ev.event, attempt=ev.attempts + 1, status_code=status, error=outcome.error,
                    dead_letter=next_at is None)

    def _next_at(self, ev: EventRecord, now: int, retry_after_ms: int | None) -> int | None:
        attempt = ev.attempts + 1
        if attempt >= self.policy.max_attempts:
            return None
        delay = backoff.exponential(attempt, self.policy.base_ms, self.policy.max_ms, self.rng.random())
        if retry_after_ms is not None:
            delay = max(delay, min(retry_after_ms, self.policy.max_ms))
        return now + delay
