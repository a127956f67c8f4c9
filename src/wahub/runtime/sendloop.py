"""The per-instance send loop: drains the outbox one item at a time while the instance is ready.

Each turn reads the persisted send log and asks :func:`wahub.domain.ratelimit.next_allowed`
when the next send may happen (interval + jitter, rolling minute and hour). If that time or the
first item's ``next_attempt_at`` lies ahead, the loop sleeps on the injected clock until then or
until an enqueue wakes it; otherwise it claims the FIFO-first due item (the database allows one
``sending`` item per instance) and sends it. The item is marked handed over, in its own
transaction, right before the engine call: see :mod:`wahub.store.sql` for why that makes crash
recovery exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from wahub.domain import backoff, ratelimit
from wahub.domain.errors import DisconnectedError, PermanentSendError, SendError
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, OutboxItem

if TYPE_CHECKING:
    from wahub.runtime.hub import Hub, InstanceRuntime

log = structlog.get_logger("wahub.sendloop")

SEND_TIMEOUT_MS = 120_000  # an engine call that hangs longer is treated as `uncertain`


class SendLoop:
    """Drains one instance's outbox; started on ``ready``, stopped on any other state."""

    def __init__(self, hub: Hub, rt: InstanceRuntime) -> None:
        self.hub = hub
        self.rt = rt
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jitter_ms = 0
        self._last_call_at = 0
        self._prev_call_at = 0

    @property
    def running(self) -> bool:
        """True while the loop task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start draining (no-op when already running)."""
        if not self.running:
            self._task = asyncio.ensure_future(self._run())

    def poke(self) -> None:
        """Wake the loop: an item was enqueued or released."""
        self.wake.set()

    async def stop(self) -> None:
        """Stop after the current send (an in-flight send is allowed to finish)."""
        task = self._task
        self._task = None
        if task is not None and not task.done():
            self.wake.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        structlog.contextvars.clear_contextvars()
        rt = self.rt
        while rt.state == State.READY:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a stop arrived while a call swallowed it
                raise asyncio.CancelledError
            self.wake.clear()
            try:
                delay = await self._turn()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the loop alive; the item (if any) stays in the store
                log.exception("send_loop_error", instance_id=rt.id)
                delay = 1000
            if delay is None:
                continue
            await self._wait(delay)
        log.debug("send_loop_stopped", instance_id=rt.id, state=rt.state.value)

    async def _wait(self, ms: int | None) -> None:
        waiter = asyncio.ensure_future(self.wake.wait())
        tasks: set[asyncio.Future[object]] = {waiter}  # type: ignore[arg-type]
        sleeper = None
        if ms is not None:
            sleeper = asyncio.ensure_future(self.hub.clock.sleep(ms))
            tasks.add(sleeper)  # type: ignore[arg-type]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if sleeper is not None:
                sleeper.cancel()

    async def _turn(self) -> int | None:
        """One step. Returns ms to wait (None = go again now; a very large wait = until poked)."""
        hub, rt = self.hub, self.rt
        store, clock = hub.store, hub.clock
        now = clock.now_ms()
        due_at = await store.next_due_at(rt.id)
        if due_at is None:
            return 3_600_000  # idle: sleep until an enqueue pokes us
        limits = hub.limits_for(rt.record)
        history = await store.send_history(rt.id, now - ratelimit.HOUR_MS)
        decision = ratelimit.next_allowed(history, now, limits, self._jitter_ms)
        start_at = max(decision.at_ms, due_at)
        if start_at > now:
            reason = decision.reason if decision.at_ms >= due_at else "backoff"
            hub.metrics.deferred(rt.id, reason)
            return start_at - now
        item = await store.claim_next(rt.id, now)
        if item is None:
            return 200
        await self._send(item)
        self._jitter_ms = hub.rng.randint(0, hub.settings.send_jitter_ms) if hub.settings.send_jitter_ms else 0
        return None

    async def _send(self, item: OutboxItem) -> None:
        hub, rt = self.hub, self.rt
        store, clock = hub.store, hub.clock
        engine = rt.engine
        if rt.state != State.READY or engine is None:
            await store.release(item.seq, next_attempt_at=clock.now_ms(), now=clock.now_ms())
            return
        await store.mark_handed_over(item, clock.now_ms())
        # The windows count hand-over times; the commit above takes a variable few ms, so also keep
        # the engine calls themselves at least the interval apart within this process.
        interval = hub.limits_for(rt.record).interval_ms
        while (wait := self._last_call_at + interval - clock.now_ms()) > 0:
            await clock.sleep(wait)
        self._prev_call_at, self._last_call_at = self._last_call_at, clock.now_ms()
        log.info("send_started", instance_id=rt.id, queue_id=item.queue_id, kind=item.kind.value,
                 attempt=item.attempts + 1)
        try:
            if hub.settings.typing_indicator_enabled and item.kind == ItemKind.TEXT:
                with contextlib.suppress(Exception):
                    await engine.send_typing(item.chat_id)
            if item.kind == ItemKind.POLL:
                coro = engine.send_poll(item.chat_id, item.payload["caption"], list(item.payload["options"]),
                                        bool(item.payload.get("multipleAnswers")))
            else:
                coro = engine.send_text(item.chat_id, item.payload["message"])
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that
            # arrives as the send completes, and the loop would then never stop.
            async with asyncio.timeout(SEND_TIMEOUT_MS / 1000):
                result = await coro
        except SendError as exc:
            if exc.maybe_sent:  # it may have gone out: never risk a second copy
                await hub.item_uncertain(rt, item, f"{exc} (delivery unknown)")
                return
            await self._failed(item, exc)
            return
        except TimeoutError:
            await hub.item_uncertain(rt, item, f"engine did not answer within {SEND_TIMEOUT_MS} ms")
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an engine bug: treat as transient so the item is not lost
            log.exception("send_engine_error", instance_id=rt.id, queue_id=item.queue_id)
            await self._retry_or_fail(item, f"engine error: {exc.__class__.__name__}", "engine_error")
            return
        await hub.item_sent(rt, item, result.message_id)

    async def _failed(self, item: OutboxItem, exc: SendError) -> None:
        """Route a send error that surely did not deliver: re-queue, retry later, or fail."""
        hub, rt = self.hub, self.rt
        store, clock = hub.store, hub.clock
        if isinstance(exc, DisconnectedError):
            # Not the message's fault: back to the queue, no attempt counted; lifecycle reconnects.
            now = clock.now_ms()
            unlog = exc.reason == "not_connected"
            await store.release(item.seq, next_attempt_at=now, now=now, error=str(exc), reason=exc.reason,
                                unlog=unlog)
            if unlog:  # nothing went out: this call does not count for the spacing either
                self._last_call_at = self._prev_call_at
            log.info("send_interrupted", instance_id=rt.id, queue_id=item.queue_id, reason=exc.reason)
        elif isinstance(exc, PermanentSendError):
            await hub.item_failed(rt, item, str(exc), exc.reason, count_attempt=True, unlog=True)
            self._last_call_at = self._prev_call_at
        else:
            await self._retry_or_fail(item, str(exc), exc.reason)

    async def _retry_or_fail(self, item: OutboxItem, error: str, reason: str) -> None:
        hub = self.hub
        attempts = item.attempts + 1
        if attempts >= hub.settings.max_send_attempts:
            await hub.item_failed(self.rt, item, f"{error} (after {attempts} attempts)", reason, count_attempt=True)
            return
        now = hub.clock.now_ms()
        delay = backoff.exponential(attempts, hub.settings.retry_base_backoff_ms, hub.settings.retry_max_backoff_ms,
                                    hub.rng.random())
        await hub.store.release(item.seq, next_attempt_at=now + delay, now=now, error=error, reason=reason,
                                count_attempt=True)
        hub.metrics.send_outcome(self.rt.id, "retry")
        log.info("send_retry_scheduled", instance_id=self.rt.id, queue_id=item.queue_id, attempt=attempts,
                 delay_ms=delay, reason=reason)
