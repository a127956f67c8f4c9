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

Throughput (docs/PERFORMANCE.md): a lane reads its pending events in batches of ``BATCH`` (oldest
first) and works through them in memory; a delivered event is marked by one writer that commits the
marks of every lane together (:class:`_Marks`), and a lane's next read skips the events whose mark
may not be committed yet, so a delivered event is never read back as pending and sent twice. A crash
between a delivery and its mark's commit redelivers the event after the restart (same id), as any
crash between an attempt and its record always did; so does a batch of marks that fails to commit
(its lanes are woken and send those events again, possibly after later ones: duplicates, same ids).
A failed attempt is recorded at once and the lane reads its events afresh; so does a replay of dead
letters (:meth:`Dispatcher.replayed`), which puts the replayed events back before the lane's later
ones. HTTP goes through
:class:`wahub.runtime.hookclient.HookClient` (kept-alive connections per receiver).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from wahub.domain import backoff
from wahub.domain.clock import Clock
from wahub.domain.webhookretry import RESPONSE_TIMEOUT, classify
from wahub.runtime import signing
from wahub.runtime.clock import sleep_or_wake
from wahub.runtime.hookclient import Poster
from wahub.store.base import EventsPort
from wahub.store.records import EventRecord

log = structlog.get_logger("wahub.webhooks")
PROTECTION_BYPASS_HEADER = "x-vercel-protection-bypass"
BATCH = 64  # pending events a lane reads at once

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
                 client: Poster, on_attempt: Callable[[str, str, float], None] | None = None,
                 owns: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.owns = owns or (lambda _iid: True)  # several nodes: lanes run on the instance's owner only
        self.clock = clock
        self.policy = policy
        self.target_for = target_for
        self.rng = rng or random.Random()
        self.client = client
        self._marks = _Marks(store, self.notify)
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._reread: set[str] = set()  # lanes whose in-memory events are stale (dead letters replayed)
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

    def replayed(self, instance_id: str) -> None:
        """Dead letters of ``instance_id`` were put back: its lane reads its events afresh, in order."""
        self._reread.add(instance_id)
        self.notify(instance_id)

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
        self._marks.unsettled.pop(instance_id, None)

    async def close(self) -> None:
        """Stop every lane; undelivered events stay stored for the next start."""
        self._closed = True
        for task in self._lanes.values():
            task.cancel()
        for task in self._lanes.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):  # a mark not committed: that event is delivered again later
            await self._marks.drain()
        await self.client.aclose()

    async def _lane(self, instance_id: str) -> None:
        structlog.contextvars.clear_contextvars()
        wake = self._wakes[instance_id]
        queue: deque[EventRecord] = deque()
        while not self._closed and self.owns(instance_id):
            try:
                if instance_id in self._reread:
                    self._reread.discard(instance_id)
                    queue.clear()
                if not queue:
                    wake.clear()
                    queue.extend(await self._read(instance_id))
                    if not queue:
                        if wake.is_set():
                            continue  # an event was stored while we looked: do not lose the wake-up
                        return
                head = queue[0]
                now = self.clock.now_ms()
                if head.next_attempt_at > now:
                    wake.clear()
                    await sleep_or_wake(self.clock, head.next_attempt_at - now, wake)
                    queue.clear()  # read again: a replay or a new URL may have changed what is due
                    continue
                delivered = await self._attempt(head)
                queue.popleft()
                if not delivered:
                    queue.clear()  # a failed attempt was recorded: read its new state
            except asyncio.CancelledError:
                raise
            except Exception:  # a lane must survive anything; the event stays pending
                log.exception("webhook_lane_error", instance_id=instance_id)
                queue.clear()
                await sleep_or_wake(self.clock, self.policy.base_ms, wake)

    async def _read(self, instance_id: str) -> list[EventRecord]:
        """The lane's next pending events, without those delivered whose mark may not be committed yet."""
        unsettled = self._marks.unsettled.get(instance_id, {})
        skip = {seq for seq, done in unsettled.items() if not done.done() or done.exception() is None}
        settled = [seq for seq, done in unsettled.items() if done.done()]
        rows = await self.store.pending_events(instance_id, BATCH + len(skip))
        for seq in settled:  # committed (or failed) before this read began: the store tells the truth now
            unsettled.pop(seq, None)
        if not unsettled:
            self._marks.unsettled.pop(instance_id, None)
        return [row for row in rows if row.seq not in skip][:BATCH]

    async def _attempt(self, ev: EventRecord) -> bool:
        """One attempt; True when delivered (its mark is queued), False when the failure was recorded."""
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
            return False
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
                answer = await self.client.post(target.url, body, headers, self.policy.timeout_ms / 1000)
                status = answer.status_code
                retry_after = answer.retry_after
            except httpx.ReadTimeout:
                response_timeout = True
                error = f"{RESPONSE_TIMEOUT}: no answer within {self.policy.timeout_ms} ms"
            except httpx.TimeoutException as exc:  # connect/write/pool: the receiver did not get the event
                error = f"{exc.__class__.__name__}: no progress within {self.policy.timeout_ms} ms"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:300]
            except (httpx.InvalidURL, ValueError, UnicodeError, OSError) as exc:  # a URL no client can dial:
                error = f"{exc.__class__.__name__}: {exc}"[:300]  # an attempt that failed, retried then dead
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
            health.last_success_at = now
            health.consecutive_failures = 0
            log.debug("webhook_delivered", instance_id=ev.instance_id, event_id=ev.event_id,
                      webhook_event=ev.event)
            self._marks.add(ev.instance_id, ev.seq, now, status or 200)
            return True
        health.last_error, health.last_error_at, health.last_status_code = outcome.error, now, status
        health.consecutive_failures += 1
        await self.store.event_failed(ev.seq, now=now, next_attempt_at=next_at,
                                      error=outcome.error or "failed", status_code=status)
        log.warning("webhook_attempt_failed", instance_id=ev.instance_id, event_id=ev.event_id,
                    webhook_event=ev.event, attempt=ev.attempts + 1, status_code=status, error=outcome.error,
                    dead_letter=next_at is None)
        return False

    def _next_at(self, ev: EventRecord, now: int, retry_after_ms: int | None) -> int | None:
        attempt = ev.attempts + 1
        if attempt >= self.policy.max_attempts:
            return None
        delay = backoff.exponential(attempt, self.policy.base_ms, self.policy.max_ms, self.rng.random())
        if retry_after_ms is not None:
            delay = max(delay, min(retry_after_ms, self.policy.max_ms))
        return now + delay


class _Marks:
    """One writer for delivered marks: every lane's marks pending at a time go in one transaction.

    ``unsettled`` holds, per instance, the delivered events whose mark may not be committed yet (seq →
    the commit's future): a lane's read skips them, so it never sends one twice. A batch that fails to
    commit leaves its events pending; their lanes are woken (``wake``) and deliver them again, same ids.
    """

    def __init__(self, store: EventsPort, wake: Callable[[str], None]) -> None:
        self.store = store
        self.wake = wake
        self.unsettled: dict[str, dict[int, asyncio.Future[None]]] = {}
        self._batch: list[tuple[int, int, int]] = []
        self._instances: set[str] = set()
        self._done: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    def add(self, instance_id: str, seq: int, now: int, status_code: int) -> None:
        """Queue a delivered mark (``now`` in ms)."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        self._batch.append((seq, now, status_code))
        self._instances.add(instance_id)
        self.unsettled.setdefault(instance_id, {})[seq] = self._done
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def drain(self) -> None:
        """Wait until every queued mark is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        while self._batch:
            batch, instances, done = self._batch, self._instances, self._done
            self._batch, self._instances, self._done = [], set(), None
            assert done is not None
            try:
                await self.store.events_delivered(batch)
            except Exception as exc:  # the events stay pending and go out again (same ids)
                log.warning("webhook_marks_failed", count=len(batch), error=f"{exc.__class__.__name__}: {exc}"[:300])
                done.set_exception(exc)
                done.exception()  # retrieved: nobody awaits these futures
                for instance_id in instances:
                    self.wake(instance_id)
                continue
            done.set_result(None)
