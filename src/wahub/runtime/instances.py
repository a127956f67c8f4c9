"""The instances room: create, change, delete, log out and restart instances, with input validation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from wahub.domain import chatid, ladder, sendsettings
from wahub.domain.clock import Clock
from wahub.domain.errors import Conflict, EngineError, InvalidInput, ServiceUnavailable
from wahub.domain.lifecycle import State
from wahub.engines import base as eng
from wahub.runtime import urlguard
from wahub.runtime.events import WEBHOOK_EVENTS
from wahub.runtime.registry import InstanceRuntime, Registry
from wahub.store.base import InstancesPort
from wahub.store.records import InstanceRecord

log = structlog.get_logger("wahub.instances")

# Per-instance overrides: column → (API name, lowest, highest). There is no "0 = unlimited".
LIMIT_FIELDS = {"limit_per_minute": ("perMinute", 1, 10_000), "limit_per_hour": ("perHour", 1, 1_000_000),
                "send_interval_ms": ("intervalMs", 0, 86_400_000)}


def limit_values(limits: dict[str, int | None]) -> dict[str, int | None]:
    """Checked per-instance rate limits by column name (``limit_per_minute``, ``limit_per_hour``,
    ``send_interval_ms``; None = the hub's default). Raises InvalidInput naming ``limits.<field>``."""
    for key, value in limits.items():
        if key not in LIMIT_FIELDS:
            raise InvalidInput(f"unknown limit {key!r}")
        label, low, high = LIMIT_FIELDS[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            raise InvalidInput(f"limits.{label} must be an integer from {low} to {high:,}, or null for the default")
    return dict(limits)


class Instances:
    """Operator actions on instances; the lifecycle itself is the supervisor's."""

    def __init__(self, store: InstancesPort, clock: Clock, registry: Registry, engines: eng.EngineFactory, *,
                 add_runtime: Callable[[InstanceRecord], InstanceRuntime], notify: Callable[[str], None],
                 forget: Callable[[str], None], url_guard: urlguard.UrlGuard,
                 allow_status_broadcast: bool = False) -> None:
        self.store = store
        self.allow_status_broadcast = allow_status_broadcast
        self.url_guard = url_guard
        self.clock = clock
        self.registry = registry
        self.engines = engines
        self.add_runtime = add_runtime
        self.notify = notify
        self.forget = forget
        # How a new instance's row becomes its runtime and starts (several nodes: a view that waits for
        # a claim, unless this node claimed it while the row was being stored and runs it already).
        self.start_new: Callable[[InstanceRecord], Awaitable[InstanceRuntime]] = self._boot

    async def _boot(self, rec: InstanceRecord) -> InstanceRuntime:
        rt = self.add_runtime(rec)
        await rt.supervisor.boot("created")
        return rt

    async def restore_all(self, stagger_ms: int, auto_resume: bool, concurrency: int = 1) -> None:
        """Bring back every instance that was running (boot), at most ``concurrency`` connecting at once.

        A slot is held from an instance's start until its attempt is resolved (ready, a QR shown, a
        failure or the watchdog). Starts are spread ``stagger_ms / concurrency`` apart, so WhatsApp
        never sees a burst of logins; with ``concurrency`` 1 this is the old one-by-one restore.
        """
        slots = asyncio.Semaphore(max(1, concurrency))
        gap_ms = stagger_ms // max(1, concurrency)
        started: list[asyncio.Task[None]] = []

        async def one(rt: InstanceRuntime) -> None:
            try:
                if rt.id in self.registry:
                    await rt.supervisor.boot("process start")
                    await rt.supervisor.settled.wait()
            except Exception:
                log.exception("restore_failed", instance_id=rt.id)
            finally:
                slots.release()

        try:
            for rt in list(self.registry.values()):
                if not ladder.may_restore(rt.state, rt.restricted_until, self.clock.now_ms(), auto_resume):
                    continue
                if started and gap_ms:
                    await self.clock.sleep(gap_ms)
                await slots.acquire()
                started.append(asyncio.ensure_future(one(rt)))
            await asyncio.gather(*started, return_exceptions=True)
        finally:
            for task in started:
                task.cancel()
            await asyncio.gather(*started, return_exceptions=True)

    async def create(self, name: str, webhook_url: str | None, events: list[str] | None,
                     webhook_secret: str | None = None, settings: dict[str, Any] | None = None, *,
                     engine: str = "whatsmeow", limits: dict[str, int | None] | None = None,
                     after_insert: Callable[[str], Awaitable[None]] | None = None) -> InstanceRuntime:
        """Create and start an instance driven by ``engine`` (``settings``: API-named send settings,
        :mod:`wahub.domain.sendsettings`; ``limits``: column-named rate limits, see :func:`limit_values`).
        Raises InvalidInput (bad name/url/events/settings/limits) or Conflict
        (exists). ``after_insert(id)`` stores what belongs with the row (cloud credentials); when it
        raises, the row is deleted again and nothing is left half-written."""
        instance_id = chatid.instance_id_from_name(name)
        url = await self.url_guard.checked(webhook_url)
        evs = _check_events(events)
        columns = sendsettings.columns(settings or {})
        webhook_secret = _check_secret(webhook_secret)
        columns.update(limit_values(limits or {}))
        existing = self.registry.get(instance_id)
        if existing is not None:
            raise Conflict(f"instance id {instance_id} (from the name {name!r}) is taken by the instance named "
                           f"{existing.record.name!r}", instanceId=instance_id)
        rec = await self.store.create_instance(id=instance_id, name=name.strip(), webhook_url=url,
                                               webhook_events=evs, webhook_secret=webhook_secret,
                                               now=self.clock.now_ms(), engine=engine, **columns)
        if after_insert is not None:
            try:
                await after_insert(instance_id)
            except BaseException:
                await self.store.delete_instance(instance_id)
                raise
        log.info("instance_created", instance_id=instance_id, engine=engine)
        return await self.start_new(rec)

    async def update(self, instance_id: str, *, name: str | None = None, webhook_url: Any = ...,
                     events: list[str] | None = None, webhook_secret: Any = ...,
                     limits: dict[str, int | None] | None = None,
                     settings: dict[str, Any] | None = None) -> InstanceRuntime:
        """Change name, webhook settings, per-instance limits or send settings (API names)."""
        rt = self.registry.get_rt(instance_id)
        values: dict[str, Any] = {}
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise InvalidInput("name must be a non-empty string")
            values["name"] = name.strip()
        if webhook_url is not ...:
            values["webhook_url"] = await self.url_guard.checked(webhook_url)
        if events is not None:
            values["webhook_events"] = _check_events(events)
        if webhook_secret is not ...:
            values["webhook_secret"] = _check_secret(webhook_secret)
        values.update(sendsettings.columns(settings or {}))
        values.update(limit_values(limits or {}))
        if values:
            await self.store.update_instance(rt.id, **values)
            rec = await self.store.get_instance(rt.id)
            assert rec is not None
            rt.record = rec
            rt.sendloop.poke()
            if "webhook_url" in values:
                self.notify(rt.id)
        return rt

    async def delete(self, instance_id: str) -> int | None:
        """Log out, stop and delete an instance with all its records and session files.

        Returns how many open (queued or sending) items were deleted with it; None for an unknown id.
        """
        rt = self.registry.lookup(instance_id)
        if rt is None:
            return None
        self.registry.pop(rt.id, None)
        engine = rt.engine
        rt.watch.stop()
        await rt.supervisor.shutdown()
        await self._end_session(rt.id, engine)
        dropped = await self.store.delete_instance(rt.id)
        self.forget(rt.id)
        log.info("instance_deleted", instance_id=rt.id, dropped_open_items=dropped)
        return dropped or 0

    async def _end_session(self, instance_id: str, engine: eng.Engine | None, *, purge: bool = True) -> None:
        """Log out on WhatsApp when an engine runs; in every state, delete the local session files.

        A ``restricted``, ``logged_out`` or ``error`` instance has no engine: its session is removed
        through the factory, so the same name created again asks for a QR instead of coming back linked.
        ``purge`` (delete) also removes it after a successful logout; otherwise the factory's removal
        is only the fallback.
        """
        if engine is not None:
            try:
                await engine.logout()
                if not purge:
                    return
            except Exception:
                log.warning("logout_failed", instance_id=instance_id, exc_info=True)
        try:
            await self.engines.remove_session(instance_id)
        except Exception:
            log.exception("remove_session_failed", instance_id=instance_id)

    async def logout(self, instance_id: str) -> InstanceRuntime:
        """End the WhatsApp session (session files removed); the instance and its queue stay."""
        rt = self.registry.get_rt(instance_id)
        engine = rt.engine
        rt.supervisor.cancel_all()
        await self._end_session(rt.id, engine, purge=False)
        rt.engine = None
        if rt.state != State.LOGGED_OUT:
            await rt.supervisor.transition(State.LOGGED_OUT, "logout requested", event="auth_failure",
                                           data={"message": "logged out by request"})
        return rt

    async def restart(self, instance_id: str, kind: str) -> InstanceRuntime:
        """Explicit restart (``soft`` | ``hard``), counted against the budget; returns at once."""
        if kind not in ("soft", "hard"):
            raise InvalidInput('type must be "soft" or "hard"')
        rt = self.registry.get_rt(instance_id)
        if rt.engine is None and kind == "soft":
            kind = "hard"  # nothing to reconnect: build the engine again
        await rt.supervisor.request_restart(kind, "requested by operator", manual=True)
        return rt

    async def request_pairing_code(self, instance_id: str, phone: str) -> str:
        """Pairing code for phone-number login. Raises InvalidInput or EngineError."""
        rt = self.registry.get_rt(instance_id)
        digits = chatid.phone_number(chatid.normalize(phone, field="phoneNumber",
                                                      default_country_code=rt.record.default_country_code))
        if digits is None:
            raise InvalidInput("phoneNumber must be a phone number")
        if rt.state == State.READY:
            raise Conflict("instance is already linked")
        if rt.engine is None:
            raise Conflict(f"instance is {rt.state.value}; restart it before requesting a pairing code")
        try:
            return await rt.engine.request_pairing_code(digits)
        except eng.EngineStateConflict as exc:
            raise Conflict(f"{exc}; restart the instance (POST /instances/{rt.id}/restart "
                           '{"type": "hard"}) and request the code while it shows a QR',
                           reason=exc.reason, instanceState=rt.state.value) from exc

    async def is_registered(self, instance_id: str, contact: Any) -> bool:
        """Whether a number is on WhatsApp (needs a ready instance)."""
        rt = self.registry.get_rt(instance_id)
        chat = chatid.normalize(contact, field="contactId", default_country_code=rt.record.default_country_code,
                                allow_status_broadcast=self.allow_status_broadcast)
        if rt.state != State.READY or rt.engine is None:  # the instance's state, not the server's health
            raise Conflict(f"instance is {rt.state.value}, not ready")
        try:
            return await rt.engine.is_registered(chat)
        except EngineError as exc:
            raise ServiceUnavailable(str(exc)) from exc


def _check_secret(secret: Any) -> str | None:
    if secret is None or secret == "":
        return None
    if not isinstance(secret, str) or len(secret) > 512:
        raise InvalidInput("webhook.secret must be a string of at most 512 characters")
    return secret


def _check_events(events: Any) -> list[str]:
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise InvalidInput("webhook.events must be a list of event names")
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise InvalidInput(f"webhook.events has unknown events {unknown}; known: {', '.join(WEBHOOK_EVENTS)}")
    return list(dict.fromkeys(events))
