"""The per-instance send loop: drains the outbox one item at a time while the instance is ready.

Each turn asks :func:`wahub.domain.ratelimit.next_allowed` when the next send may happen
(interval + jitter, rolling minute and hour) against the instance's last hour of send instants,
read from the persisted send log when the loop starts and kept in memory afterwards (this loop is
the instance's only sender). If that time lies ahead, the loop sleeps on the injected clock until
then; an enqueue wakes it earlier only when its item could go out sooner (:meth:`SendLoop.poke`).
Otherwise it claims the FIFO-first due item (the database allows one ``sending`` item per
instance); when none is due it reads the queue's next due time and sleeps until then.

One instant per send. The item is claimed and marked handed over (with the message id the engine
will use, when it can choose one) in one transaction, committed before the engine call; that commit
takes a variable time, so the decision is taken again afterwards, against the same history (nothing
else can send for this instance meanwhile), on the clock, with no await between that final decision
and the engine call. Before it, the item's number is resolved to the id WhatsApp knows
(:mod:`wahub.runtime.resolve`; cached, so usually no await). The instant of that decision is the
send's time: it is what the sandbox stamps, what is persisted in the send log (with the outcome,
:meth:`OutboxPort.mark_sent`) and the item's ``sent_at``, and what the windows of later decisions
count. See ``docs/decisions.md`` ("One instant per send") and ``docs/PERFORMANCE.md`` for what each
of the four statements of a send guards.

Nothing here reaches back into its owner: the loop receives a store port, a clock, a policy, a
view of its instance (:class:`Link`) and the outbox's outcome callbacks (:class:`Outcomes`).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from wahub.domain import backoff, ratelimit
from wahub.domain.clock import Clock
from wahub.domain.errors import DisconnectedError, PermanentSendError, SendError
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, OutboxItem
from wahub.engines import base as eng
from wahub.runtime import sendkinds
from wahub.runtime.clock import sleep_or_wake
from wahub.runtime.resolve import NeedsLookup
from wahub.store.base import Fenced, OutboxPort

log = structlog.get_logger("wahub.sendloop")

IDLE_MS = 3_600_000  # nothing queued: sleep until an enqueue pokes the loop
ENGINE_STAMP_TOLERANCE_MS = 1_000  # an engine-reported send time this close after our instant is adopted


class ClaimTimes:
    """How long claims take on this hub lately, shared by all its send loops: the claim lead.

    A loop starts its claim (with the hand-over) this long before its pacing instant and then waits
    for the instant, so the time the claim's commit spends queued behind other instances' writes is
    not added to the interval. The lead is the longest claim (submit → committed answer, ms on the
    hub's clock) seen in the last ``window_ms``, kept per ``bucket_ms``, and never more than
    ``cap_ms`` (``SEND_CLAIM_LEAD_MS``; 0: claims start at the pacing instant).

    Why the longest lately: when many instances are due in the same instant (e.g. linked together)
    their claims queue in one batch, and the last one waits for all the others; the next round of
    the same instances queues the same way, one interval later, which the window spans. On a quiet
    hub claims take a millisecond or two and so does the lead. The lead is also how long a claimed,
    handed-over item can wait before its engine call, the window in which a kill leaves an item
    that never left reported ``uncertain``: bounded by the cap, near zero unless claims are slow.
    """

    def __init__(self, cap_ms: int, *, window_ms: int = 300_000, bucket_ms: int = 10_000) -> None:
        self.cap_ms = cap_ms
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self._buckets: collections.deque[list[int]] = collections.deque()  # [bucket start, longest ms]

    def observe(self, now: int, took_ms: int) -> None:
        """A claim started at ``now - took_ms`` answered at ``now`` (epoch ms)."""
        if self.cap_ms <= 0:
            return
        took = min(max(took_ms, 0), self.cap_ms)  # a clock step is no claim time
        start = now - now % self.bucket_ms
        buckets = self._buckets
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] = max(buckets[-1][1], took)
        else:
            buckets.append([start, took])

    def lead_ms(self, now: int) -> int:
        """The lead at ``now`` (epoch ms): 0 ≤ lead ≤ ``cap_ms``."""
        buckets = self._buckets
        while buckets and (buckets[0][0] <= now - self.window_ms or buckets[0][0] > now):
            buckets.popleft()  # too old, or left ahead by a backward clock step
        return max((b[1] for b in buckets), default=0)


@dataclass(frozen=True)
class SendPolicy:
    """The settings the loop obeys (ms throughout)."""

    max_attempts: int
    retry_base_ms: int
    retry_max_ms: int
    jitter_ms: int
    typing: bool
    send_timeout_ms: int = 120_000  # an engine call that hangs longer is treated as `uncertain`
    # when claims start before their pacing instant; one for all the hub's loops (default: never early)
    claim_times: ClaimTimes = field(default_factory=lambda: ClaimTimes(0))


class Link(Protocol):
    """What the loop may see of its instance: the state, the engine and the effective limits."""

    @property
    def id(self) -> str:
        """The instance id."""
        ...

    @property
    def state(self) -> State:
        """The lifecycle state (the loop sends only while ``ready``)."""
        ...

    @property
    def engine(self) -> eng.Engine | None:
        """The running engine, if any."""
        ...


class Outcomes(Protocol):
    """Where the loop reports the end of a send (the outbox room)."""

    async def sent(self, item: OutboxItem, message_id: str, at: int) -> None:
        """The engine accepted the item at instant ``at``."""
        ...

    async def failed(self, item: OutboxItem, error: str, reason: str, *, unlog: bool = False) -> None:
        """The item failed for good."""
        ...

    async def uncertain(self, item: OutboxItem, why: str) -> None:
        """The item may or may not have reached WhatsApp."""
        ...

    def deferred(self, instance_id: str, reason: str) -> None:
        """A send waits for a limit or a backoff (metrics)."""
        ...

    def retried(self, instance_id: str) -> None:
        """A send is retried later (metrics)."""
        ...


Resolve = Callable[[eng.Engine, str, bool], Awaitable[str]]
"""The id to send a chat id to (:meth:`wahub.runtime.resolve.Resolver.resolve` bound to the instance;
the flag allows asking WhatsApp, else :class:`NeedsLookup` when no answer is stored); raises the
``SendError`` family (not on WhatsApp: permanent; no answer: transient)."""


class SendLoop:
    """Drains one instance's outbox; started on ``ready``, stopped on any other state."""

    def __init__(self, link: Link, store: OutboxPort, clock: Clock, policy: SendPolicy,
                 limits: Callable[[], ratelimit.Limits], outcomes: Outcomes, rng: random.Random,
                 resolve: Resolve | None = None) -> None:
        self.link = link
        self.store = store
        self.clock = clock
        self.policy = policy
        self.limits = limits
        self.outcomes = outcomes
        self.rng = rng
        self.resolve = resolve
        self.wake = asyncio.Event()
        self._stopping = asyncio.Event()  # set by drain(): an item waiting for its instant goes back
        self._task: asyncio.Task[None] | None = None
        self._jitter_ms = 0
        self._draining = False
        self._history: list[int] | None = None  # send instants of the last hour; None = read from the store
        self._not_before = 0  # the pacing decision of the last turn (epoch ms): no send before it
        self._wake_at: int | None = None  # when the parked loop wakes by itself; None while it works

    @property
    def running(self) -> bool:
        """True while the loop task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start draining (no-op when already running, or once draining for a stop)."""
        if not self.running and not self._draining:
            self._task = asyncio.ensure_future(self._run())

    def poke(self, due_at: int | None = None) -> None:
        """Wake the loop: an item was enqueued or released.

        With ``due_at`` (epoch ms: a new item that may be sent from then on), a parked loop is woken
        only when that item could go out before the loop's own planned wake-up; an enqueue to an
        instance whose next send is hours away then costs no query. Without it the loop always wakes.
        """
        wake_at = self._wake_at
        if due_at is None or wake_at is None or max(due_at, self._not_before) < wake_at:
            self.wake.set()

    def stop_taking(self) -> None:
        """The process is stopping (SIGTERM): take no new item from now on; an item claimed early
        and still waiting for its pacing instant goes back to the queue. :meth:`drain` then waits
        for the loop to end."""
        self._draining = True
        self._stopping.set()
        self.wake.set()

    async def drain(self, grace_ms: int) -> None:
        """Take no new item; let the loop end on its own (an engine call in flight finishes), for at
        most ``grace_ms``; then stop it. An item claimed early and still waiting for its pacing
        instant has not gone out: it goes back to the queue at once.

        Letting the loop end rather than cancelling it also means no store query is cut off midway:
        a cancelled query's database thread would otherwise answer into a closed event loop.
        """
        self.stop_taking()
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                async with asyncio.timeout(grace_ms / 1000):
                    await asyncio.shield(task)
        await self.stop()

    async def stop(self) -> None:
        """Stop the loop now (an in-flight call is cancelled; its item becomes uncertain on restart)."""
        task = self._task
        self._task = None
        if task is not None and not task.done():
            self.wake.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        structlog.contextvars.clear_contextvars()
        self._history = None  # (re)started: the store's send log is the truth
        while self.link.state == State.READY and not self._draining:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a stop arrived while a call swallowed it
                raise asyncio.CancelledError
            self.wake.clear()
            self._wake_at = None
            try:
                delay = await self._turn()
            except asyncio.CancelledError:
                raise
            except Fenced:  # another node holds the instance now: nothing of ours may be written
                log.warning("send_loop_fenced", instance_id=self.link.id)
                break
            except Exception:  # keep the loop alive; the item (if any) stays in the store
                log.exception("send_loop_error", instance_id=self.link.id)
                self._history = None
                delay = 1000
            if delay is None:
                continue
            await self._wait(delay)
        self._wake_at = None
        log.debug("send_loop_stopped", instance_id=self.link.id, state=self.link.state.value)

    async def _wait(self, ms: int | None) -> None:
        if self.wake.is_set():
            return
        self._wake_at = self.clock.now_ms() + (ms if ms is not None else IDLE_MS)
        try:
            await sleep_or_wake(self.clock, ms, self.wake)
        finally:
            self._wake_at = None

    async def _recent_sends(self, now: int) -> list[int]:
        """The send instants of the last hour, ascending: read once per loop start (or after an
        outcome that may have removed a logged send), then kept here, since this loop is the only
        sender of its instance."""
        if self._history is None:
            self._history = await self.store.send_history(self.link.id, now - ratelimit.HOUR_MS)
        history = self._history
        del history[:bisect.bisect_right(history, now - ratelimit.HOUR_MS)]
        return history

    async def _turn(self) -> int | None:
        """One step. Returns ms to wait (None = go again now; a very large wait = until poked).

        The pacing decision comes first and needs no query (the history is kept in memory); the
        claim is tried only once a send is allowed, and the queue's next due time is read only when
        nothing was due. A send therefore costs two transactions: the claim with its hand-over,
        and the outcome (see :meth:`_send`).
        """
        iid = self.link.id
        now = self.clock.now_ms()
        history = await self._recent_sends(now)
        limits = self.limits()
        decision = ratelimit.next_allowed(history, now, limits, self._jitter_ms)
        self._not_before = decision.at_ms
        claims = self.policy.claim_times
        lead = claims.lead_ms(now)
        if decision.at_ms > now + lead:
            self.outcomes.deferred(iid, decision.reason)
            return decision.at_ms - now - lead
        engine = self.link.engine
        if engine is None or self._draining:
            return 200
        chosen: str | None = None
        with contextlib.suppress(Exception):
            chosen = engine.new_message_id()
        # Typing goes out between the claim and the hand-over, so only then are they two transactions.
        own = getattr(self.link, "typing", None)  # the instance's own typing setting; None: the policy's
        typing = self.policy.typing if own is None else own
        hand_over = not typing
        # With a claim lead the hand-over (and its send-log row, which a restart counts for the interval
        # and the windows) is recorded at the pacing instant, not at the earlier claim: nothing goes out
        # before it, and a kill after the call must not leave the send logged up to the lead too early.
        at = max(now, decision.at_ms)
        asked = self.clock.now_ms()
        item = await self.store.claim_next(iid, at, hand_over=hand_over, chosen_message_id=chosen)
        answered = self.clock.now_ms()
        claims.observe(answered, answered - asked)
        if item is None:
            due_at = await self.store.next_due_at(iid)
            if due_at is None:
                return IDLE_MS
            if due_at > now:
                self.outcomes.deferred(iid, "backoff")
                return due_at - now
            return 200  # due, but another item of the instance is still `sending`
        await self._send(item, history, limits, engine, chosen, handed_over=hand_over, typing=bool(typing))
        self._jitter_ms = self.rng.randint(0, self.policy.jitter_ms) if self.policy.jitter_ms else 0
        return None

    async def _send(self, item: OutboxItem, history: list[int], limits: ratelimit.Limits, engine: eng.Engine,
                    chosen: str | None, *, handed_over: bool, typing: bool = False) -> None:
        link, store, clock = self.link, self.store, self.clock
        if link.state != State.READY or link.engine is not engine or self._draining:
            await store.release(item.seq, next_attempt_at=clock.now_ms(), now=clock.now_ms(), unlog=handed_over)
            self._history = None
            return
        # Who the number is on WhatsApp: a stored answer, or a question to WhatsApp before the first
        # send to it. A question is never asked while the item is handed over: a crash or a failed
        # answer meanwhile would leave an item marked as possibly sent that never left. So a
        # handed-over item whose number needs a question has its hand-over taken back (no send
        # counted; the item stays claimed), then the question is asked, then it is handed over again.
        # Either way before the pacing decision below.
        chat = item.chat_id
        if self.resolve is not None:
            try:
                try:
                    chat = await self.resolve(engine, item.chat_id, not handed_over)
                except NeedsLookup:
                    await store.take_back_hand_over(item)
                    handed_over = False
                    chat = await self.resolve(engine, item.chat_id, True)
            except SendError as exc:  # not on WhatsApp: fails for good; no answer: retried later
                self._history = None
                await self._failed(item, exc)
                return
            if link.state != State.READY or link.engine is not engine or self._draining:
                await store.release(item.seq, next_attempt_at=clock.now_ms(), now=clock.now_ms(), unlog=handed_over)
                return
        if not handed_over:
            if typing and item.kind == ItemKind.TEXT:  # a claim without hand-over is not a wish to type
                with contextlib.suppress(Exception):
                    await engine.send_typing(chat)
            await store.mark_handed_over(item, max(clock.now_ms(), self._not_before), chosen_message_id=chosen)
        # Decide again: awaits happened since the first decision. `history` is still the whole
        # story (this instance has one item in flight), so only time moved. Waiting here (for the
        # pacing instant after a claim lead) the item is handed over but nothing has gone out: a clean
        # stop, a state change or a cancelled task puts it back in the queue, its send-log row gone.
        try:
            while True:
                now = clock.now_ms()
                wait = ratelimit.next_allowed(history, now, limits, self._jitter_ms).at_ms - now
                if wait <= 0:
                    break
                stopping = await self._sleep_unless_stopping(wait)
                if stopping or link.state != State.READY or link.engine is not engine:
                    await self._put_back(item)
                    return
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._put_back(item)
            raise
        lease_valid = getattr(link, "lease_valid", None)  # several nodes: the lease is surely still ours
        if lease_valid is not None and not lease_valid():
            raise Fenced(link.id)  # the next owner finds the item handed over: uncertain, never sent twice
        instant = now  # nothing but the engine call from here
        log.debug("send_started", instance_id=link.id, queue_id=item.queue_id, kind=item.kind.value,
                  attempt=item.attempts + 1)
        try:
            async with asyncio.timeout(self.policy.send_timeout_ms / 1000):
                result = await sendkinds.send_item(engine, item, chat, chosen)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every outcome is classified below
            self._history = None  # the outcome may take the send out of the log again
            await store.stamp_send(item.queue_id, instant)
            await self._after_error(item, exc)
            return
        # The engine may report when the send arrived (the sandbox's stamp); a read of the same clock
        # a moment after ours can land on the next millisecond, and that stamp is what counts.
        if instant <= result.timestamp <= instant + ENGINE_STAMP_TOLERANCE_MS:
            instant = result.timestamp
        bisect.insort(history, instant)
        # Recording the outcome also stamps the send log with `instant` (OutboxPort.mark_sent), in the
        # same transaction.
        await self.outcomes.sent(item, result.message_id, instant)

    async def _sleep_unless_stopping(self, ms: int) -> bool:
        """Sleep ``ms`` on the clock; True (at once) when a clean stop (:meth:`drain`) comes first."""
        await sleep_or_wake(self.clock, ms, self._stopping)
        return self._draining

    async def _put_back(self, item: OutboxItem) -> None:
        """The item, claimed and handed over, never reached the engine: queued again (due now) and
        its send-log row removed. Shielded, so the cancel of a stop cannot cut the write off."""
        self._history = None
        now = self.clock.now_ms()
        await asyncio.shield(self.store.release(item.seq, next_attempt_at=now, now=now, unlog=True))

    async def _after_error(self, item: OutboxItem, exc: BaseException) -> None:
        """Classify a failed call (see ``docs/decisions.md``, "Maybe sent").

        A ``SendError`` with ``maybe_sent``, our own timeout, and any exception that is not a
        ``SendError`` (an engine bug after the call started: nothing proves the message did not
        leave) are ``uncertain`` and never retried automatically.
        """
        if isinstance(exc, SendError) and not exc.maybe_sent:
            await self._failed(item, exc)
        elif isinstance(exc, SendError):
            await self.outcomes.uncertain(item, f"{exc} (delivery unknown)")
        elif isinstance(exc, TimeoutError):
            await self.outcomes.uncertain(item, f"engine did not answer within {self.policy.send_timeout_ms} ms")
        elif isinstance(exc, Exception):
            log.error("send_engine_error", instance_id=self.link.id, queue_id=item.queue_id,
                      error=exc.__class__.__name__)
            await self.outcomes.uncertain(item, f"engine error after the call started: {exc.__class__.__name__}")
        else:
            raise exc

    async def _failed(self, item: OutboxItem, exc: SendError) -> None:
        """Route a send error that surely did not deliver: re-queue, retry later, or fail."""
        store, clock = self.store, self.clock
        if isinstance(exc, DisconnectedError):
            # Not the message's fault: back to the queue, no attempt counted; lifecycle reconnects.
            now = clock.now_ms()
            unlog = exc.reason == "not_connected"  # nothing went out: not counted for the windows
            await store.release(item.seq, next_attempt_at=now, now=now, error=str(exc), reason=exc.reason,
                                unlog=unlog)
            log.info("send_interrupted", instance_id=self.link.id, queue_id=item.queue_id, reason=exc.reason)
        elif isinstance(exc, PermanentSendError):
            await self.outcomes.failed(item, str(exc), exc.reason, unlog=True)
        else:
            await self._retry_or_fail(item, str(exc), exc.reason)

    async def _retry_or_fail(self, item: OutboxItem, error: str, reason: str) -> None:
        attempts = item.attempts + 1
        if attempts >= self.policy.max_attempts:
            await self.outcomes.failed(item, f"{error} (after {attempts} attempts)", reason)
            return
        now = self.clock.now_ms()
        delay = backoff.exponential(attempts, self.policy.retry_base_ms, self.policy.retry_max_ms, self.rng.random())
        await self.store.release(item.seq, next_attempt_at=now + delay, now=now, error=error, reason=reason,
                                 count_attempt=True)
        self.outcomes.retried(self.link.id)
        log.info("send_retry_scheduled", instance_id=self.link.id, queue_id=item.queue_id, attempt=attempts,
                 delay_ms=delay, reason=reason)
