"""The per-instance lifecycle supervisor (DESIGN §2).

It maps engine events to transitions of :mod:`wahub.domain.lifecycle`, records every
transition with its webhook events in one transaction, and runs the reconnection ladder:

* unexpected disconnect → wait ``RESTART_BACKOFF_MS * 2**(n-1)`` (n = consecutive failed
  attempts, reset only after ``STABLE_READY_MS`` of uninterrupted ``ready``), then a soft
  restart for the first attempt and hard restarts after it;
* every restart, automatic or manual, is first checked against the persisted budget
  (``MAX_RESTARTS_PER_WINDOW`` in ``RESTART_WINDOW_MINUTES``); over budget → ``error``;
* restarts are single-flight *including their budget check and charge*: requests that arrive while
  one is being admitted, runs, or its attempt is still unresolved join it and get the same answer;
* a connect failure (:class:`~wahub.engines.base.ConnectFailed`: DNS, TLS, refused, timeout) is
  ``lastError`` at once and a failed attempt of the ladder; ``DISABLE_AUTO_RECONNECT`` leaves a
  dropped instance ``disconnected`` until a restart; ``MIN_DISCONNECT_COOLDOWN_MS`` is the least wait;
* an attempt that hears nothing (no QR, no login, no failure) on a stored session is a stale
  session: one hard restart that discards it (``engine.discard_session``) follows, and a second
  silent attempt ends in ``needs_qr``;
* each attempt has a watchdog (``SOFT_/HARD_RESTART_TIMEOUT_MS``): neither ``ready`` nor a QR in
  time is a failed attempt; ``authenticated`` without ``ready`` is resolved by a readiness probe
  after ``READY_PROBE_TIMEOUT_MS``;
* terminal states (``needs_qr``, ``logged_out``, ``restricted``, ``error``) stop the engine and the
  send loop, keep the queue, and are left only by an explicit restart (or a ban's expiry when
  ``RESTRICTED_AUTO_RESUME`` is on). The QR window is timed from the attempt's first QR, so QR
  refreshes never move it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from wahub.config import Settings
from wahub.domain import ladder, lifecycle
from wahub.domain.clock import Clock
from wahub.domain.lifecycle import State
from wahub.engines import base as eng
from wahub.observability import Metrics
from wahub.runtime.eventhold import EventHold
from wahub.runtime.events import Events, qr_png_b64, restricted_data, wa_state
from wahub.runtime.registry import InstanceRuntime
from wahub.runtime.restarts import Restarts
from wahub.runtime.timers import Timers
from wahub.store.base import LifecyclePort

log = structlog.get_logger("wahub.supervisor")



@dataclass(frozen=True)
class LifecyclePolicy:
    """The lifecycle settings (ms unless named otherwise); see :class:`wahub.config.Settings`."""

    restart_backoff_ms: int
    max_restarts_per_window: int
    restart_window_minutes: float
    soft_restart_timeout_ms: int
    hard_restart_timeout_ms: int
    ready_probe_timeout_ms: int
    qr_window_ms: int
    restricted_auto_resume: bool
    disable_auto_reconnect: bool = False
    min_disconnect_cooldown_ms: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> LifecyclePolicy:
        """The policy named by the settings."""
        return cls(**{f: getattr(settings, f) for f in cls.__dataclass_fields__})


OnTransition = Callable[[InstanceRuntime, State, State], None]
DataEvents = Callable[[InstanceRuntime, eng.EngineEvent], Awaitable[bool]]


class Supervisor(Restarts):
    """Drives one instance's engine through the lifecycle."""

    def __init__(self, rt: InstanceRuntime, store: LifecyclePort, clock: Clock, policy: LifecyclePolicy,
                 events: Events, engines: eng.EngineFactory, metrics: Metrics, *, on_transition: OnTransition,
                 data_events: DataEvents, hold: EventHold | None = None) -> None:
        self.rt = rt
        self.store = store
        self.clock = clock
        self.policy = policy
        self.events = events
        self.engines = engines
        self.metrics = metrics
        self.on_transition = on_transition
        self.data_events = data_events
        self.hold = hold or EventHold(rt.id, clock, metrics)
        self.failures = 0
        self._restart: asyncio.Task[None] | None = None
        self._admission: asyncio.Future[asyncio.Task[None]] | None = None
        self._attempt_open = False  # a restart's attempt is not resolved yet (ready, QR, failure)
        self._heard = False  # the current attempt produced any connection event
        self._discard_next = False  # the next hard restart discards the stored session first
        self._discarded = False  # the stale session was discarded in this ladder run
        self.settled = asyncio.Event()  # set once the current attempt is resolved (restore waits on it)
        self.settled.set()
        self.timers = Timers(clock, rt.id)
        self._qr_started: int | None = None
        self._lock = asyncio.Lock()
        self._moving = asyncio.Lock()  # state changes apply one at a time, in the order they were asked

    def _arm(self, name: str, ms: int, fn: Any) -> None:
        self.timers.arm(name, ms, fn)

    def _cancel(self, name: str) -> None:
        self.timers.cancel(name)

    def cancel_all(self) -> None:
        """Stop every pending timer (instance deleted or hub stopping)."""
        self.timers.cancel_all()

    # -- transitions -----------------------------------------------------------------------------
    async def transition(self, to: State, reason: str | None, *, event: str | None = None,
                         data: dict[str, Any] | None = None, **values: Any) -> bool:
        """Move to ``to`` if the table allows it; store it with ``change_state`` and ``event``.

        Returns False (and records nothing) when the move is not allowed or not a change. Changes
        are serialized: one whose write is slow is never overtaken by a later one (which would then
        be overwritten, e.g. ``ready`` by the QR's earlier ``connecting``).
        """
        async with self._moving:
            return await self._transition(to, reason, event, data, values)

    async def _transition(self, to: State, reason: str | None, event: str | None, data: dict[str, Any] | None,
                          values: dict[str, Any]) -> bool:
        rt = self.rt
        src = rt.state
        if src == to or not lifecycle.can_move(src, to):
            log.debug("transition_ignored", instance_id=rt.id, src=src.value, dst=to.value, reason=reason)
            return False
        now = self.clock.now_ms()
        drafts = self.events.drafts(rt.record, "change_state", {
            "status": wa_state(to, rt.qr is not None), "state": to.value,
            "previousState": src.value, "reason": reason, "at": now})
        if event is not None:
            drafts += self.events.drafts(rt.record, event, data or {})
        await self.store.record_transition(rt.id, from_state=src.value, to_state=to.value, reason=reason,
                                               now=now, events=drafts, **values)
        rt.state = to
        rt.state_since = now
        rt.state_reason = reason
        if to == State.READY or to in lifecycle.TERMINAL:
            self._settle()  # the attempt is resolved, however it got there (also logout by request)
        for key, value in values.items():
            if hasattr(rt, key):
                setattr(rt, key, value)
        self.on_transition(rt, src, to)
        log.info("state_changed", instance_id=rt.id, src=src.value, dst=to.value, reason=reason)
        if drafts:
            self.events.notify(rt.id)
        return True

    # -- starting and stopping -----------------------------------------------------------------
    async def boot(self, reason: str) -> None:
        """Start the engine for an instance that should run (creation or process start); no budget."""
        async with self._lock:
            self.settled.clear()
            if self.rt.state != State.INITIALIZING:
                await self.transition(State.INITIALIZING, reason)
            await self._build_and_start(self.policy.hard_restart_timeout_ms)

    def _settle(self) -> None:
        """The current attempt is resolved: later restart requests start a new one."""
        self._attempt_open = False
        self.settled.set()

    async def _build_and_start(self, timeout_ms: int) -> None:
        rt = self.rt
        await self._stop_engine()
        built: list[eng.Engine] = []

        async def sink(event: eng.EngineEvent) -> None:
            # Events from an engine that was replaced (hard restart) or stopped are dropped.
            if not built or rt.engine is not built[0]:
                return
            try:  # a failing store holds the event (in order) and retries it: never dropped
                await self.hold.deliver(event, self._handle)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine_event_error", instance_id=rt.id, engine_event=type(event).__name__)

        engine = self.engines.create(rt.id, sink)
        built.append(engine)
        rt.engine = engine
        self._qr_started = None
        self._heard = False
        await engine.start()
        self._arm("watchdog", timeout_ms, self._watchdog)

    async def _handle(self, event: eng.EngineEvent) -> None:
        if not await self.data_events(self.rt, event):  # data events go straight to inbound
            await self.on_event(event)

    async def _stop_engine(self) -> None:
        engine = self.rt.engine
        self.rt.engine = None
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.stop()

    async def shutdown(self) -> None:
        """Stop timers, the send loop and the engine (hub stopping or instance deleted)."""
        pending = self.timers.pending()
        self.cancel_all()
        if self._restart is not None and self._restart is not asyncio.current_task():
            self._restart.cancel()
            pending.append(self._restart)
        await asyncio.gather(*pending, return_exceptions=True)
        self.hold.stop()
        self._settle()
        await self.rt.sendloop.stop()
        await self._stop_engine()

    def _schedule_reconnect(self, why: str) -> None:
        """Next rung of the ladder after a failed or lost connection (unless auto-reconnect is off)."""
        self._settle()
        if self.policy.disable_auto_reconnect:
            log.info("auto_reconnect_disabled", instance_id=self.rt.id, reason=why)
            return
        self.failures += 1
        delay, kind = ladder.next_rung(self.failures, self.policy.restart_backoff_ms,
                                       self.policy.min_disconnect_cooldown_ms)
        log.info("reconnect_scheduled", instance_id=self.rt.id, delay_ms=delay, kind=kind, attempt=self.failures,
                 reason=why)

        async def go() -> None:
            if self.rt.state in lifecycle.TERMINAL:
                return
            await self.request_restart(kind, why, manual=False)

        self._arm("backoff", delay, go)

    async def _watchdog(self) -> None:
        rt = self.rt
        if rt.state == State.READY or rt.state in lifecycle.TERMINAL or rt.qr is not None:
            return
        log.warning("restart_attempt_timed_out", instance_id=rt.id, state=rt.state.value, heard=self._heard)
        if not self._heard and rt.state == State.INITIALIZING:  # no QR, no login, no failure: a stale session
            if self._discarded:
                await self._terminal(State.NEEDS_QR, "stored session discarded; a new QR scan is needed", None, {},
                                     last_error="the stored session was stale; restart and scan a new QR code")
                return
            self._discarded = self._discard_next = True
            await self.transition(State.DISCONNECTED, "stale session: neither QR nor ready", event="disconnected",
                                  data={"reason": "stale_session"}, last_error="stale session discarded")
            self._settle()
            await self.request_restart("hard", "stale session: discard it and show a QR", manual=False)
            return
        if rt.state != State.DISCONNECTED:
            await self.transition(State.DISCONNECTED, "attempt timed out without ready", event="disconnected",
                                  data={"reason": "timeout"})
        self._schedule_reconnect("attempt timed out")

    async def _terminal(self, to: State, reason: str, event: str | None, data: dict[str, Any],
                        **values: Any) -> None:
        self.cancel_all()
        self._settle()
        await self.transition(to, reason, event=event, data=data, **values)
        await self._stop_engine()

    # -- engine events ---------------------------------------------------------------------------
    async def on_event(self, ev: eng.EngineEvent) -> None:
        """Handle one connection event (QR, ready, disconnect, ban); data events go to inbound."""
        rt = self.rt
        self._heard = True
        if isinstance(ev, eng.QrCode):
            if rt.state == State.READY or rt.state in lifecycle.TERMINAL:
                return  # a QR while ready is noise; a terminal instance waits for a human
            self._settle()  # a shown QR waits for a human, not for this attempt
            now = self.clock.now_ms()
            if self._qr_started is None:
                self._qr_started = now
                self._arm("qr_window", self.policy.qr_window_ms, self._qr_window_over)
            rt.qr = ev.code
            rt.qr_at = now
            self._cancel("watchdog")
            if rt.state in (State.INITIALIZING, State.DISCONNECTED):
                await self.transition(State.CONNECTING, "waiting for QR scan")
            if self.events.wants(rt.record, "qr"):  # rendering the PNG costs ~10 ms: only for a receiver
                drafts = self.events.drafts(rt.record, "qr", {"qr": qr_png_b64(ev.code), "qrString": ev.code})
                await self.events.store_drafts(rt.id, drafts)
        elif isinstance(ev, eng.PairCode):
            rt.pair_code = ev.code
        elif isinstance(ev, eng.Authenticated):
            self._cancel("qr_window")
            rt.qr = None
            await self.events.authenticated(rt.record)
            if rt.state in (State.INITIALIZING, State.DISCONNECTED):
                await self.transition(State.CONNECTING, "authenticated")
            self._arm("ready_probe", self.policy.ready_probe_timeout_ms, self._ready_probe)
        elif isinstance(ev, eng.Ready):
            for name in ("watchdog", "qr_window", "ready_probe", "backoff"):
                self._cancel(name)
            rt.qr = None
            self._qr_started = None
            self._discarded = False
            values: dict[str, Any] = {"last_error": None}
            if ev.phone:
                values["phone"] = ev.phone
            if ev.push_name:
                values["push_name"] = ev.push_name
            await self.transition(State.READY, "connected", event="ready",
                                  data={"status": "ready", "phoneNumber": ev.phone, "pushName": ev.push_name},
                                  **values)
            self._settle()
            self._arm("stable", ladder.STABLE_READY_MS, self._stable)
        elif isinstance(ev, eng.ConnectFailed):
            await self._connect_failed(ev)
        elif isinstance(ev, eng.Disconnected):
            if rt.state in lifecycle.TERMINAL or rt.state in (State.DISCONNECTED, State.INITIALIZING):
                return  # already handled, or a restart is under way (its watchdog judges the attempt)
            self._cancel("stable")
            await self.transition(State.DISCONNECTED, ev.reason, event="disconnected", data={"reason": ev.reason})
            self.metrics.disconnects.labels(rt.id).inc()
            self._schedule_reconnect(f"disconnected: {ev.reason}")
        elif isinstance(ev, eng.LoggedOut):
            await self._terminal(State.LOGGED_OUT, ev.reason, "auth_failure", {"message": ev.reason},
                                 last_error=f"logged out: {ev.reason}")
        elif isinstance(ev, eng.TemporaryBan):
            data = restricted_data(ev.code, ev.expires_at)
            await self._terminal(State.RESTRICTED, f"temporary ban code {ev.code}", "restricted", data,
                                 restricted_until=ev.expires_at, last_error=f"temporarily banned (code {ev.code})")
            resume_at = ladder.resume_at(State.RESTRICTED, ev.expires_at, self.policy.restricted_auto_resume)
            if resume_at is not None:
                wait = max(0, resume_at - self.clock.now_ms())

                async def resume() -> None:
                    if rt.state == State.RESTRICTED:
                        await self.request_restart("hard", "restriction expired", manual=False)

                self._arm("ban_expiry", wait, resume)
        elif isinstance(ev, eng.QrTimeout):
            await self._qr_window_over()

    async def _connect_failed(self, ev: eng.ConnectFailed) -> None:
        """WhatsApp unreachable: ``lastError`` names the reason at once and the ladder counts a failed attempt."""
        rt = self.rt
        if rt.state in lifecycle.TERMINAL:
            return
        message = f"WhatsApp unreachable ({ev.reason}): {ev.detail}".rstrip(": ")
        self._cancel("watchdog")
        self._cancel("stable")
        log.warning("connect_failed", instance_id=rt.id, reason=ev.reason, detail=ev.detail)
        if rt.state != State.DISCONNECTED:
            await self.transition(State.DISCONNECTED, f"connect failed: {ev.reason}", event="disconnected",
                                  data={"reason": f"connect_failed_{ev.reason}", "detail": ev.detail},
                                  last_error=message)
        rt.last_error = message
        if not self.timers.armed("backoff"):  # one failed attempt per attempt, however often the engine retries
            self._schedule_reconnect(f"connect failed: {ev.reason}")

    async def _qr_window_over(self) -> None:
        rt = self.rt
        if rt.state in (State.READY, *lifecycle.TERMINAL):
            return
        rt.qr = None
        await self._terminal(State.NEEDS_QR, "QR window ended without a scan", None, {},
                             last_error="QR code was not scanned in time")

    async def _ready_probe(self) -> None:
        rt = self.rt
        if rt.state == State.READY or rt.engine is None:
            return
        ok = False
        with contextlib.suppress(Exception):
            ok = await rt.engine.probe_ready()
        if ok:
            await self.on_event(eng.Ready(phone=rt.phone, push_name=rt.push_name))
        else:
            await self.events.ready_timeout(rt.record, rt.state)
            await self.transition(State.DISCONNECTED, "authenticated but never ready", event="disconnected",
                                  data={"reason": "ready_timeout"})
            self._schedule_reconnect("authenticated but never ready")

    async def _stable(self) -> None:
        if self.rt.state == State.READY:
            self.failures = 0
