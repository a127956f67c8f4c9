"""Restarts of one instance: the budget, single-flight admission, and the restart itself.

Part of :class:`wahub.runtime.supervisor.Supervisor` (a mixin: the supervisor owns the state it uses).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from wahub.domain import ladder, lifecycle
from wahub.domain.clock import Clock
from wahub.domain.errors import Conflict
from wahub.domain.lifecycle import State
from wahub.engines import base as eng
from wahub.observability import Metrics
from wahub.runtime.registry import InstanceRuntime
from wahub.store.base import LifecyclePort

if TYPE_CHECKING:
    from wahub.runtime.supervisor import LifecyclePolicy

log = structlog.get_logger("wahub.supervisor")


class Restarts:
    """The restart half of the supervisor."""

    rt: InstanceRuntime
    store: LifecyclePort
    clock: Clock
    policy: LifecyclePolicy
    engines: eng.EngineFactory
    metrics: Metrics
    failures: int
    settled: asyncio.Event
    _lock: asyncio.Lock
    _restart: asyncio.Task[None] | None
    _admission: asyncio.Future[asyncio.Task[None]] | None
    _attempt_open: bool
    _heard: bool
    _discard_next: bool
    _discarded: bool
    _qr_started: int | None
    _watchdog: Callable[[], Awaitable[None]]

    async def transition(self, to: State, reason: str | None, *, event: str | None = None,
                         data: dict[str, Any] | None = None, **values: Any) -> bool:
        raise NotImplementedError

    def cancel_all(self) -> None:
        raise NotImplementedError

    def _arm(self, name: str, ms: int, fn: Any) -> None:
        raise NotImplementedError

    def _cancel(self, name: str) -> None:
        raise NotImplementedError

    def _settle(self) -> None:
        raise NotImplementedError

    async def _stop_engine(self) -> None:
        raise NotImplementedError

    async def _build_and_start(self, timeout_ms: int) -> None:
        raise NotImplementedError

    async def budget(self) -> tuple[list[int], int]:
        """Restart times inside the current window and the window length (ms)."""
        window = int(self.policy.restart_window_minutes * 60_000)
        used = await self.store.restarts_since(self.rt.id, self.clock.now_ms() - window)
        return used, window

    async def _over_budget(self) -> tuple[bool, list[int], int]:
        """The one budget check (:func:`wahub.domain.ladder.over_budget`) with the restarts it counted."""
        used, window = await self.budget()
        return ladder.over_budget(used, self.policy.max_restarts_per_window), used, window

    async def request_restart(self, kind: str, reason: str, *, manual: bool) -> asyncio.Task[None]:
        """Start a restart, or join the one pending (single-flight, budget check and charge included).

        A request joins when a restart is being admitted, runs, or its attempt is not resolved yet;
        every joined caller gets the same answer (the same task, or the same :class:`Conflict`).
        Manual restarts count against the budget like automatic ones. Over budget, a manual restart
        of a running instance is refused (:class:`Conflict`, so an app cannot hammer ``reboot``),
        but one of an instance in a terminal state is the human intervention that state waits for
        and always goes ahead.
        """
        if self._restart is not None and (not self._restart.done() or self._attempt_open):
            return self._restart
        if self._admission is None:
            admission = asyncio.ensure_future(self._admit(kind, reason, manual))
            self._admission = admission

            def done(_f: asyncio.Future[asyncio.Task[None]]) -> None:
                if self._admission is admission:
                    self._admission = None

            admission.add_done_callback(done)
        return await asyncio.shield(self._admission)

    async def _admit(self, kind: str, reason: str, manual: bool) -> asyncio.Task[None]:
        override = False
        if manual:
            over, used, window = await self._over_budget()
            override = self.rt.state in lifecycle.TERMINAL
            if over and not override:
                frees = ladder.budget_frees_at(used, window)
                raise Conflict(f"restart budget exhausted ({len(used)} restarts in the last "
                               f"{self.policy.restart_window_minutes:g} minutes); frees at {frees}",
                               budgetFreesAt=frees)
            self.failures = 0
            self._discarded = False
        self._attempt_open = True
        self.settled.clear()
        self._restart = asyncio.ensure_future(self._do_restart(kind, reason, manual, override))
        return self._restart

    async def _do_restart(self, kind: str, reason: str, manual: bool, override: bool = False) -> None:
        try:
            await self._restart_now(kind, reason, manual, override)
        except BaseException:
            self._settle()  # a failed restart (store fault, engine error) must not hold later requests
            raise

    async def _restart_now(self, kind: str, reason: str, manual: bool, override: bool) -> None:
        async with self._lock:
            rt = self.rt
            over, used, _ = await self._over_budget()
            if over and not override:
                self.cancel_all()
                await self._stop_engine()
                await self.transition(State.ERROR, f"restart budget exhausted ({len(used)} restarts in "
                                      f"{self.policy.restart_window_minutes:g} min)",
                                      last_error="restart budget exhausted")
                self._settle()
                return
            now = self.clock.now_ms()
            await self.store.record_restart(rt.id, kind=kind, reason=reason, now=now)
            self.metrics.restarts.labels(rt.id, kind).inc()
            self._cancel("backoff")
            self._cancel("watchdog")
            self._cancel("ready_probe")
            await self.transition(State.INITIALIZING, f"{kind} restart: {reason}")
            rt.qr = None
            log.info("restart", instance_id=rt.id, kind=kind, reason=reason, manual=manual,
                     budget_used=len(used) + 1)
            if kind == "hard" and self._discard_next:
                self._discard_next = False
                await self._discard_session()
            if kind == "soft" and rt.engine is not None:
                self._qr_started = None
                self._heard = False
                try:
                    await rt.engine.reconnect()
                except Exception:
                    log.exception("soft_restart_failed", instance_id=rt.id)
                self._arm("watchdog", self.policy.soft_restart_timeout_ms, self._watchdog)
            else:
                await self._build_and_start(self.policy.hard_restart_timeout_ms)

    async def _discard_session(self) -> None:
        """Delete the stored (stale) session so the next start shows a QR."""
        rt = self.rt
        engine = rt.engine
        rt.engine = None
        log.warning("stale_session_discarded", instance_id=rt.id)
        try:
            if engine is not None:
                await engine.discard_session()
            else:
                await self.engines.remove_session(rt.id)
        except Exception:
            log.exception("discard_session_failed", instance_id=rt.id)

