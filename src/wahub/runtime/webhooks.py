"""Durable webhook delivery (DESIGN §4).

Events are rows in ``webhook_events``, written in the same transaction as the change that
caused them. The dispatcher runs one *lane* per instance: a lane delivers that instance's
pending events strictly in order (the head must be delivered or dead-lettered before the next
one goes), so receivers see events in the order they happened; lanes of different instances
run concurrently. A per-URL semaphore caps requests in flight to one receiver. Nothing here is
awaited by the send loop or the lifecycle: they only store events and call :meth:`notify`.

Retry policy (pure, in :func:`classify`): 2xx delivered; network errors, timeouts, 408, 429
(honouring ``Retry-After``) and 5xx retried with exponential backoff and jitter; any other
status is a dead letter at once; after ``WEBHOOK_MAX_ATTEMPTS`` attempts the event is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from wahub.domain import backoff
from wahub.domain.clock import Clock
from wahub.runtime import signing
from wahub.store.records import EventRecord
from wahub.store.sql import SqlStore

log = structlog.get_logger("wahub.webhooks")


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


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: delivered, retry (with an optional server-chosen delay), or dead."""

    kind: str  # "delivered" | "retry" | "dead"
    status_code: int | None
    error: str | None
    retry_after_ms: int | None = None


def classify(status_code: int | None, error: str | None, retry_after: str | None, now_ms: int) -> Outcome:
    """Map one attempt's result to an :class:`Outcome` (DESIGN §4 retry rules)."""
    if status_code is None:
        return Outcome("retry", None, error or "network error")
    if 200 <= status_code < 300:
        return Outcome("delivered", status_code, None)
    if status_code in (408, 429) or status_code >= 500:
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


class Dispatcher:
    """Delivers stored events: ordered per instance, concurrent across instances."""

    def __init__(self, store: SqlStore, clock: Clock, policy: DispatchPolicy,
                 target_for: Callable[[str], Target | None], *, rng: random.Random | None = None,
                 client: httpx.AsyncClient | None = None,
                 on_attempt: Callable[[str, str, float], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.target_for = target_for
        self.rng = rng or random.Random()
        self.client = client or httpx.AsyncClient(timeout=policy.timeout_ms / 1000, follow_redirects=False)
        self._own_client = client is None
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._url_slots: dict[str, asyncio.Semaphore] = {}
        self._on_attempt = on_attempt
        self._closed = False

    async def start(self) -> None:
        """Start lanes for every instance with undelivered events (after a restart too)."""
        for instance_id in await self.store.instances_with_pending_events():
            self.notify(instance_id)

    def notify(self, instance_id: str) -> None:
        """New events were stored for ``instance_id``: wake or start its lane."""
        if self._closed:
            return
        wake = self._wakes.setdefault(instance_id, asyncio.Event())
        wake.set()
        lane = self._lanes.get(instance_id)
        if lane is None or lane.done():
            self._lanes[instance_id] = asyncio.ensure_future(self._lane(instance_id))

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
        while not self._closed:
            wake.clear()
            try:
                head = await self.store.head_event(instance_id)
                if head is None:
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
            await self.store.event_failed(ev.seq, now=now, next_attempt_at=self._next_at(ev, now, None),
                                          error="no webhook URL configured", status_code=None)
            return
        body = ev.body.encode("utf-8")
        headers = signing.headers(secret=target.secret, auth_token=self.policy.auth_token,
                                  event_id=ev.event_id, timestamp_s=now // 1000, body=body)
        slot = self._url_slots.setdefault(target.url, asyncio.Semaphore(self.policy.max_in_flight_per_url))
        status: int | None = None
        error: str | None = None
        retry_after: str | None = None
        started = self.clock.now_ms()
        async with slot:
            try:
                resp = await self.client.post(target.url, content=body, headers=headers,
                                              timeout=self.policy.timeout_ms / 1000)
                status = resp.status_code
                retry_after = resp.headers.get("retry-after")
            except httpx.TimeoutException:
                error = f"timeout after {self.policy.timeout_ms} ms"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:300]
        now = self.clock.now_ms()
        outcome = classify(status, error, retry_after, now)
        if self._on_attempt is not None:
            self._on_attempt(ev.instance_id, outcome.kind, (now - started) / 1000)
        if outcome.kind == "delivered":
            await self.store.event_delivered(ev.seq, now=now, status_code=status or 200)
            log.debug("webhook_delivered", instance_id=ev.instance_id, event_id=ev.event_id, webhook_event=ev.event)
            return
        next_at = None if outcome.kind == "dead" else self._next_at(ev, now, outcome.retry_after_ms)
        await self.store.event_failed(ev.seq, now=now, next_attempt_at=next_at, error=outcome.error or "failed",
                                      status_code=status)
        log.warning("webhook_attempt_failed", instance_id=ev.instance_id, event_id=ev.event_id, webhook_event=ev.event,
                    attempt=ev.attempts + 1, status_code=status, error=outcome.error,
                    dead_letter=next_at is None)

    def _next_at(self, ev: EventRecord, now: int, retry_after_ms: int | None) -> int | None:
        attempt = ev.attempts + 1
        if attempt >= self.policy.max_attempts:
            return None
        delay = backoff.exponential(attempt, self.policy.base_ms, self.policy.max_ms, self.rng.random())
        if retry_after_ms is not None:
            delay = max(delay, min(retry_after_ms, self.policy.max_ms))
        return now + delay
