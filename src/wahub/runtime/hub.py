"""The hub: owns the instances, their engines, send loops and supervisors, and the dispatcher.

The API and the dashboard talk only to :class:`Hub`. Everything durable goes through the store;
in-memory state here is a cache of it plus the running tasks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import segno
import structlog

from wahub.config import Settings
from wahub.domain import chatid, idempotency, lifecycle, ratelimit, webhookurl
from wahub.domain.clock import Clock
from wahub.domain.errors import Conflict, EngineError, InvalidInput, NotFound, QueueFull, ServiceUnavailable
from wahub.domain.lifecycle import State
from wahub.domain.outbox import (
    MAX_CAPTION_LENGTH,
    MAX_POLL_OPTION_LENGTH,
    MAX_POLL_OPTIONS,
    MAX_TEXT_LENGTH,
    MIN_POLL_OPTIONS,
    EnqueueResult,
    ItemKind,
    ItemStatus,
    OutboxItem,
)
from wahub.engines import base as eng
from wahub.engines.base import EngineFactory
from wahub.observability import Metrics
from wahub.runtime import signing, urlguard
from wahub.runtime.sendloop import SendLoop
from wahub.runtime.supervisor import Supervisor
from wahub.runtime.webhooks import Dispatcher, DispatchPolicy, Target
from wahub.store.base import FleetFigures, QueueFullSignal, Store
from wahub.store.records import EventDraft, EventRecord, InstanceRecord, PollRecord, QueueStats, VoteRecord

log = structlog.get_logger("wahub.hub")

ACK_ORDER = ("server", "delivered", "read", "played")
WEBHOOK_EVENTS = ("qr", "authenticated", "ready", "disconnected", "change_state", "auth_failure", "restricted",
                  "message", "vote_update", "message_ack", "message_sent", "message_failed", "message_uncertain")
PENDING_ACK_TTL_MS = 60_000
# Per-instance overrides: column → (API name, lowest, highest). There is no "0 = unlimited".
LIMIT_FIELDS = {"limit_per_minute": ("perMinute", 1, 10_000), "limit_per_hour": ("perHour", 1, 1_000_000),
                "send_interval_ms": ("intervalMs", 0, 86_400_000)}
_NAME_LIKE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


@dataclass
class InstanceRuntime:
    """In-memory companion of one instance row: its engine, tasks and live connection facts."""

    record: InstanceRecord
    state: State
    state_since: int
    state_reason: str | None = None
    engine: eng.Engine | None = None
    qr: str | None = None
    qr_at: int | None = None
    pair_code: str | None = None
    phone: str | None = None
    push_name: str | None = None
    last_error: str | None = None
    restricted_until: int | None = None
    pending_acks: dict[str, tuple[str, int]] = field(default_factory=dict)
    sendloop: SendLoop = field(init=False)
    supervisor: Supervisor = field(init=False)

    @property
    def id(self) -> str:
        """The instance id."""
        return self.record.id


class Hub:
    """Composition of store, engines, send loops, supervisors and webhook dispatcher."""

    def __init__(self, settings: Settings, store: Store, engine_factory: EngineFactory, *,
                 clock: Clock, rng: random.Random | None = None, sandbox: Any = None,
                 http_client: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.engine_factory = engine_factory
        self.clock = clock
        self.rng = rng or random.Random()
        self.sandbox = sandbox
        self.metrics = Metrics()
        self.instances: dict[str, InstanceRuntime] = {}
        self.url_guard = urlguard.UrlGuard(webhookurl.parse_policy(settings.webhook_allowed_networks))
        self.dispatcher = Dispatcher(
            store, clock,
            DispatchPolicy(timeout_ms=settings.webhook_timeout_ms, base_ms=settings.webhook_retry_base_ms,
                           max_ms=settings.webhook_retry_max_ms, max_attempts=settings.webhook_max_attempts,
                           max_in_flight_per_url=settings.webhook_max_in_flight_per_url,
                           auth_token=settings.webhook_auth_token),
            self._target_for, rng=self.rng, on_attempt=self.metrics.webhook_attempt,
            client=http_client or urlguard.guarded_client(self.url_guard.policy, settings.webhook_timeout_ms / 1000))
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        self.uncertain_at_boot: list[OutboxItem] = []

    # -- start / stop ----------------------------------------------------------------------------
    async def start(self, *, restore: bool = True) -> None:
        """Migrate, recover in-flight items, load instances, start delivery, restore engines."""
        await self.store.migrate()
        now = self.clock.now_ms()
        requeued, uncertain = await self.store.recover_in_flight(now)
        for rec in await self.store.list_instances():
            self._add_runtime(rec)
        for item in uncertain:
            rt = self.instances.get(item.instance_id)
            if rt is not None:
                await self._report_uncertain(rt, item)
        self.uncertain_at_boot = uncertain
        if requeued or uncertain:
            log.warning("recovered_in_flight", requeued=requeued, uncertain=len(uncertain))
        await self.dispatcher.start()
        self._started = True
        self._spawn(self._purge_loop())
        if restore:
            self._spawn(self._restore_all())

    async def stop(self) -> None:
        """Stop engines, loops and delivery; the store keeps everything for the next start."""
        background = list(self._background)
        for task in background:
            task.cancel()
        # Wait for them: a task cancelled mid-query must not outlive the store (its database
        # thread would answer into a closed event loop).
        await asyncio.gather(*background, return_exceptions=True)
        for rt in list(self.instances.values()):
            await rt.supervisor.shutdown()
        await self.dispatcher.close()
        await self.engine_factory.close()
        await self.store.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _add_runtime(self, rec: InstanceRecord) -> InstanceRuntime:
        rt = InstanceRuntime(record=rec, state=State(rec.state), state_since=rec.state_since,
                             state_reason=rec.state_reason, phone=rec.phone, push_name=rec.push_name,
                             last_error=rec.last_error, restricted_until=rec.restricted_until)
        rt.sendloop = SendLoop(self, rt)
        rt.supervisor = Supervisor(self, rt)
        self.instances[rec.id] = rt
        self.metrics.set_state(rec.id, rt.state.value, [s.value for s in State])
        return rt

    async def _restore_all(self) -> None:
        """Bring back every instance that was running, one at a time with ``RESTORE_STAGGER_MS``."""
        first = True
        for rt in list(self.instances.values()):
            if rt.state in lifecycle.TERMINAL:
                if (rt.state == State.RESTRICTED and self.settings.restricted_auto_resume
                        and rt.restricted_until is not None and rt.restricted_until <= self.clock.now_ms()):
                    pass
                else:
                    continue
            if not first and self.settings.restore_stagger_ms:
                await self.clock.sleep(self.settings.restore_stagger_ms)
            first = False
            if rt.id not in self.instances:
                continue
            try:
                await rt.supervisor.boot("process start")
            except Exception:
                log.exception("restore_failed", instance_id=rt.id)

    async def _purge_loop(self) -> None:
        interval = int(self.settings.purge_interval_minutes * 60_000)
        while True:
            await self.clock.sleep(interval)
            try:
                await self.purge()
            except Exception:
                log.exception("purge_failed")

    async def purge(self) -> dict[str, int]:
        """Delete records older than ``IDEMPOTENCY_RETENTION_DAYS`` (runs periodically)."""
        cutoff = self.clock.now_ms() - int(self.settings.idempotency_retention_days * 86_400_000)
        removed = await self.store.purge(cutoff)
        log.info("purged", **removed)
        return removed

    @property
    def started(self) -> bool:
        """True once start-up recovery finished and delivery runs."""
        return self._started

    async def refresh_gauges(self) -> None:
        """Update queue gauges from the store (called before a metrics scrape)."""
        now = self.clock.now_ms()
        figures = await self.store.fleet_figures(None, sent_since=now)  # one statement for the whole fleet
        statuses = [s.value for s in ItemStatus]
        for rt in list(self.instances.values()):
            stats = figures.get(rt.id) or FleetFigures()
            self.metrics.set_queue(rt.id, stats.by_status, statuses,
                                   (now - stats.oldest_open_at) / 1000 if stats.oldest_open_at else 0)

    # -- instances -------------------------------------------------------------------------------
    def get(self, instance_id: str) -> InstanceRuntime:
        """The runtime of an instance. Raises :class:`NotFound`."""
        rt = self._lookup(instance_id)
        if rt is None:
            raise NotFound(f"instance {instance_id} not found")
        return rt

    def _lookup(self, instance_id: str) -> InstanceRuntime | None:
        """By id; or, like the existing wa-hub, by a domain-like name whose sanitised form is the id
        (``WASP-shop.myshopify.com`` → ``WASP-shop_myshopify_com``). Nothing else is rewritten, so
        an arbitrary string can never address another instance."""
        rt = self.instances.get(instance_id)
        if rt is None and _NAME_LIKE.fullmatch(instance_id):
            rt = self.instances.get(chatid.instance_id_from_name(instance_id))
        return rt

    async def create_instance(self, name: str, webhook_url: str | None, events: list[str] | None,
                              webhook_secret: str | None = None) -> InstanceRuntime:
        """Create and start an instance. Raises InvalidInput (bad name/url/events) or Conflict (exists)."""
        instance_id = chatid.instance_id_from_name(name)
        url = await self.url_guard.checked(webhook_url)
        evs = _check_events(events)
        webhook_secret = _check_secret(webhook_secret)
        existing = self.instances.get(instance_id)
        if existing is not None:
            raise Conflict(f"instance id {instance_id} (from the name {name!r}) is taken by the instance named "
                           f"{existing.record.name!r}", instanceId=instance_id)
        rec = await self.store.create_instance(id=instance_id, name=name.strip(), webhook_url=url,
                                               webhook_events=evs, webhook_secret=webhook_secret,
                                               now=self.clock.now_ms())
        rt = self._add_runtime(rec)
        log.info("instance_created", instance_id=instance_id)
        await rt.supervisor.boot("created")
        return rt

    async def update_instance(self, instance_id: str, *, name: str | None = None, webhook_url: Any = ...,
                              events: list[str] | None = None, webhook_secret: Any = ...,
                              limits: dict[str, int | None] | None = None) -> InstanceRuntime:
        """Change name, webhook settings or per-instance limits."""
        rt = self.get(instance_id)
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
        for key, value in (limits or {}).items():
            if key not in LIMIT_FIELDS:
                raise InvalidInput(f"unknown limit {key!r}")
            label, low, high = LIMIT_FIELDS[key]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not low <= value <= high):
                raise InvalidInput(f"limits.{label} must be an integer from {low} to {high:,}, or null for the "
                                   "default")
            values[key] = value
        if values:
            await self.store.update_instance(rt.id, **values)
            rec = await self.store.get_instance(rt.id)
            assert rec is not None
            rt.record = rec
            rt.sendloop.poke()
            if "webhook_url" in values:
                self.dispatcher.notify(rt.id)
        return rt

    async def delete_instance(self, instance_id: str) -> bool:
        """Log out, stop and delete an instance with all its records and session files."""
        rt = self._lookup(instance_id)
        if rt is None:
            return False
        self.instances.pop(rt.id, None)
        engine = rt.engine
        await rt.supervisor.shutdown()
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.logout()
        await self.store.delete_instance(rt.id)
        if self.sandbox is not None:
            self.sandbox.forget(rt.id)
        self.metrics.forget(rt.id)
        self.dispatcher.forget(rt.id)
        log.info("instance_deleted", instance_id=rt.id)
        return True

    async def logout(self, instance_id: str) -> InstanceRuntime:
        """End the WhatsApp session (session files removed); the instance and its queue stay."""
        rt = self.get(instance_id)
        engine = rt.engine
        rt.supervisor.cancel_all()
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.logout()
        else:
            tmp = self.engine_factory.create(rt.id, _ignore_events)
            with contextlib.suppress(Exception):
                await tmp.logout()
        rt.engine = None
        if rt.state != State.LOGGED_OUT:
            await rt.supervisor.transition(State.LOGGED_OUT, "logout requested", event="auth_failure",
                                           data={"message": "logged out by request"})
        return rt

    async def restart(self, instance_id: str, kind: str) -> InstanceRuntime:
        """Explicit restart (``soft`` | ``hard``), counted against the budget; returns at once."""
        if kind not in ("soft", "hard"):
            raise InvalidInput('type must be "soft" or "hard"')
        rt = self.get(instance_id)
        if rt.engine is None and kind == "soft":
            kind = "hard"  # nothing to reconnect: build the engine again
        await rt.supervisor.request_restart(kind, "requested by operator", manual=True)
        return rt

    async def request_pairing_code(self, instance_id: str, phone: str) -> str:
        """Pairing code for phone-number login. Raises InvalidInput or EngineError."""
        rt = self.get(instance_id)
        digits = chatid.phone_number(chatid.normalize(phone, field="phoneNumber"))
        if digits is None:
            raise InvalidInput("phoneNumber must be a phone number")
        if rt.state == State.READY:
            raise Conflict("instance is already linked")
        if rt.engine is None:
            raise Conflict(f"instance is {rt.state.value}; restart it before requesting a pairing code")
        return await rt.engine.request_pairing_code(digits)

    async def is_registered(self, instance_id: str, contact: Any) -> bool:
        """Whether a number is on WhatsApp (needs a ready instance)."""
        rt = self.get(instance_id)
        chat = chatid.normalize(contact, field="contactId")
        if rt.state != State.READY or rt.engine is None:
            raise ServiceUnavailable(f"instance is {rt.state.value}, not ready")
        try:
            return await rt.engine.is_registered(chat)
        except EngineError as exc:
            raise ServiceUnavailable(str(exc)) from exc

    def limits_for(self, rec: InstanceRecord) -> ratelimit.Limits:
        """Effective limits of an instance (its overrides, else the settings)."""
        s = self.settings
        return ratelimit.Limits(
            per_minute=rec.limit_per_minute if rec.limit_per_minute is not None else s.max_sends_per_minute,
            per_hour=rec.limit_per_hour if rec.limit_per_hour is not None else s.max_sends_per_hour,
            interval_ms=rec.send_interval_ms if rec.send_interval_ms is not None else s.send_interval_ms)

    def qr_png_b64(self, code: str) -> str:
        """The QR string rendered as a base64 PNG (no ``data:`` prefix, as wa-hub always sent it)."""
        buf = io.BytesIO()
        segno.make(code, error="l").save(buf, kind="png", scale=6, border=2)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def on_transition(self, rt: InstanceRuntime, src: State, dst: State, reason: str | None) -> None:
        """Side effects of a recorded transition: send loop and metrics."""
        self.metrics.set_state(rt.id, dst.value, [s.value for s in State])
        if dst == State.READY:
            rt.sendloop.start()
            rt.sendloop.poke()
        elif src == State.READY:
            rt.sendloop.poke()  # the loop sees the state and stops after any in-flight send

    # -- outbox ----------------------------------------------------------------------------------
    async def enqueue(self, instance_id: str, kind: ItemKind, body: dict[str, Any], *,
                      header_key: str | None, retry: bool = False) -> EnqueueResult:
        """Validate and enqueue a send (DESIGN §3.1); never waits for WhatsApp.

        Raises InvalidInput (400), NotFound (404), Conflict (409: key reused with another payload,
        or the keyed item failed and ``retry`` was not asked), QueueFull (429).
        """
        rt = self.get(instance_id)
        chat = chatid.normalize(body.get("chatId"), field="chatId")
        content = _content(kind, body)
        fp = idempotency.fingerprint(kind.value, chat, content)
        now = self.clock.now_ms()
        if header_key is not None:
            key, source = idempotency.validate_key(header_key, field="Idempotency-Key header"), "header"
            body_key = body.get("idempotencyKey")
            if body_key is not None and body_key != header_key:
                raise InvalidInput("Idempotency-Key header and idempotencyKey body field differ")
        elif body.get("idempotencyKey") is not None:
            key, source = idempotency.validate_key(body["idempotencyKey"], field="idempotencyKey"), "body"
        else:
            key = idempotency.derive_key(rt.id, fp, now, self.settings.auto_idempotency_window_seconds)
            source = "derived"
        try:
            item, created, depth = await self.store.insert_item(
                queue_id=uuid.uuid4().hex, instance_id=rt.id, idempotency_key=key, key_source=source,
                kind=kind.value, chat_id=chat, payload={"chatId": chat, **content}, fingerprint=fp, now=now,
                max_open=self.settings.max_queue_size)
        except QueueFullSignal as full:
            raise QueueFull(f"queue full ({full.open_count} items, MAX_QUEUE_SIZE={self.settings.max_queue_size}) "
                            f"for instance {rt.id}", retry_after_s=self._retry_after_s(rt),
                            instanceState=rt.state.value, queueDepth=full.open_count) from None
        if created:
            log.info("enqueued", instance_id=rt.id, queue_id=item.queue_id, kind=kind.value, key_source=source)
            rt.sendloop.poke()
            return EnqueueResult(item, replay=False, queue_depth=depth)
        if item.fingerprint != fp:
            raise Conflict(f"idempotency key {key!r} was already used for a different message on this instance",
                           queueId=item.queue_id, idempotencyKey=key)
        if item.status in (ItemStatus.FAILED, ItemStatus.CANCELED, ItemStatus.UNCERTAIN):
            if not retry:
                raise Conflict(f"the message with idempotency key {key!r} is {item.status.value}"
                               + (f": {item.last_error}" if item.last_error else "")
                               + "; send again with retry=true to queue it again",
                               queueId=item.queue_id, idempotencyKey=key, itemStatus=item.status.value,
                               lastError=item.last_error)
            await self.store.set_item_status(item.queue_id, from_statuses=[item.status.value], to_status="queued",
                                             now=now, reset_attempts=True)
            rt.sendloop.poke()
            fresh = await self.store.get_item(item.queue_id)
            assert fresh is not None
            return EnqueueResult(fresh, replay=True, queue_depth=depth + 1)
        return EnqueueResult(item, replay=True, queue_depth=depth)

    def _retry_after_s(self, rt: InstanceRuntime) -> int:
        limits = self.limits_for(rt.record)
        return max(1, -(-60 // max(1, limits.per_minute)))

    async def item_sent(self, rt: InstanceRuntime, item: OutboxItem, message_id: str) -> None:
        """Record a successful send, its webhook and any receipts that arrived early."""
        now = self.clock.now_ms()
        drafts = self.event_drafts(rt, "message_sent", {**_item_ref(item), "messageId": message_id,
                                                        "sentAt": now})
        await self.store.mark_sent(item, message_id=message_id, now=now, events=drafts)
        self.metrics.send_outcome(rt.id, "sent")
        log.info("sent", instance_id=rt.id, queue_id=item.queue_id, message_id=message_id)
        if drafts:
            self.dispatcher.notify(rt.id)
        early = rt.pending_acks.pop(message_id, None)
        if early is not None and early[1] >= now - PENDING_ACK_TTL_MS:
            await self._advance_ack(rt, message_id, early[0], now)

    async def item_failed(self, rt: InstanceRuntime, item: OutboxItem, error: str, reason: str, *,
                          count_attempt: bool, unlog: bool = False) -> None:
        """Record a final failure and its ``message_failed`` webhook."""
        now = self.clock.now_ms()
        drafts = self.event_drafts(rt, "message_failed", {**_item_ref(item), "error": error, "reason": reason})
        await self.store.mark_failed(item, error=error, reason=reason, now=now, count_attempt=count_attempt,
                                     events=drafts, unlog=unlog)
        self.metrics.send_outcome(rt.id, "failed")
        log.warning("send_failed", instance_id=rt.id, queue_id=item.queue_id, reason=reason)
        if drafts:
            self.dispatcher.notify(rt.id)

    async def item_uncertain(self, rt: InstanceRuntime, item: OutboxItem, why: str) -> None:
        """An item whose delivery is unknown: mark it ``uncertain`` and report it."""
        now = self.clock.now_ms()
        await self.store.set_item_status(item.queue_id, from_statuses=["sending"], to_status="uncertain", now=now,
                                         error=why, reason="uncertain")
        fresh = await self.store.get_item(item.queue_id)
        await self._report_uncertain(rt, fresh or item, why)

    async def _report_uncertain(self, rt: InstanceRuntime, item: OutboxItem, why: str | None = None) -> None:
        self.metrics.send_outcome(rt.id, "uncertain")
        log.warning("send_uncertain", instance_id=rt.id, queue_id=item.queue_id)
        if self.settings.uncertain_policy == "resend":
            await self.store.set_item_status(item.queue_id, from_statuses=["uncertain"], to_status="queued",
                                             now=self.clock.now_ms())
            rt.sendloop.poke()
            return
        await self.store_events(rt, self.event_drafts(rt, "message_uncertain", {
            **_item_ref(item), "reason": why or item.last_error}))

    async def cancel_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Cancel a queued item. Raises NotFound or Conflict (not queued)."""
        return await self._change_item(instance_id, queue_id, ["queued"], "canceled", "only a queued item can be "
                                       "canceled")

    async def retry_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Queue a failed or canceled item again with a fresh attempt count."""
        return await self._change_item(instance_id, queue_id, ["failed", "canceled"], "queued",
                                       "only a failed or canceled item can be retried", reset=True)

    async def resend_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Queue an ``uncertain`` item again (the operator accepts a possible duplicate)."""
        return await self._change_item(instance_id, queue_id, ["uncertain"], "queued",
                                       "only an uncertain item can be resent", reset=True)

    async def close_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Close an ``uncertain`` item as canceled without sending it again."""
        return await self._change_item(instance_id, queue_id, ["uncertain"], "canceled",
                                       "only an uncertain item can be closed")

    async def _change_item(self, instance_id: str, queue_id: str, from_statuses: list[str], to: str, msg: str,
                           reset: bool = False) -> OutboxItem:
        rt = self.get(instance_id)
        item = await self.get_item(rt.id, queue_id)
        changed = await self.store.set_item_status(queue_id, from_statuses=from_statuses, to_status=to,
                                                   now=self.clock.now_ms(), reset_attempts=reset)
        if not changed:
            raise Conflict(f"{msg}; item {queue_id} is {item.status.value}", itemStatus=item.status.value)
        rt.sendloop.poke()
        fresh = await self.store.get_item(queue_id)
        assert fresh is not None
        return fresh

    async def get_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """One item of an instance by ``queueId``. Raises NotFound."""
        item = await self.store.get_item(queue_id)
        if item is None or item.instance_id != instance_id:
            raise NotFound(f"queue item {queue_id} not found on instance {instance_id}")
        return item

    async def get_item_by_key(self, instance_id: str, key: str) -> OutboxItem:
        """One item of an instance by idempotency key. Raises NotFound."""
        rt = self.get(instance_id)
        item = await self.store.find_item_by_key(rt.id, key)
        if item is None:
            raise NotFound(f"no item with idempotency key {key!r} on instance {rt.id}")
        return item

    async def clear_queue(self, instance_id: str) -> int:
        """Cancel every queued item of an instance."""
        rt = self.get(instance_id)
        return await self.store.clear_queue(rt.id, self.clock.now_ms())

    async def list_items(self, instance_id: str, statuses: list[str] | None = None, limit: int = 50,
                         offset: int = 0) -> tuple[list[OutboxItem], int]:
        """A page of an instance's items (oldest first) and the total matching ``statuses``. Raises NotFound."""
        rt = self.get(instance_id)
        return await self.store.list_items(rt.id, statuses=statuses, limit=limit, offset=offset)

    async def queue_stats(self, instance_id: str) -> QueueStats:
        """Counts of an instance's items by status and its oldest open item. Raises NotFound."""
        return await self.store.queue_stats(self.get(instance_id).id)

    async def poll_votes(self, instance_id: str, message_id: str) -> tuple[PollRecord | None, list[VoteRecord]]:
        """A poll wa-hub sent (None when unknown) and every voter's latest vote. Raises NotFound."""
        rt = self.get(instance_id)
        return await self.store.get_poll(rt.id, message_id), await self.store.latest_votes(rt.id, message_id)

    async def store_reachable(self) -> bool:
        """True when the database answers."""
        return await self.store.ping()

    # -- inbound events --------------------------------------------------------------------------
    async def on_inbound(self, rt: InstanceRuntime, ev: eng.InboundMessage) -> None:
        """Store a ``message`` webhook for an inbound message, once per engine message id."""
        if ev.from_me:
            return
        data = {"message": {
            "from": _short(ev.sender), "body": ev.text, "text": ev.text, "type": "chat",
            "timestamp": ev.timestamp // 1000, "id": ev.message_id, "chatId": ev.chat_id, "fromId": ev.sender,
            "fromAlt": ev.sender_alt, "pushName": ev.push_name, "timestampMs": ev.timestamp}}
        drafts = self.event_drafts(rt, "message", data)
        fresh = await self.store.record_inbound(rt.id, ev.message_id, now=self.clock.now_ms(),
                                                event=drafts[0] if drafts else None)
        if fresh and drafts:
            self.dispatcher.notify(rt.id)
        log.info("inbound_message", instance_id=rt.id, message_id=ev.message_id, duplicate=not fresh)

    async def on_vote(self, rt: InstanceRuntime, ev: eng.PollVote) -> None:
        """Resolve a poll vote against the stored poll and store one ``vote_update`` per new vote."""
        poll = await self.store.get_poll(rt.id, ev.poll_message_id)
        unresolved: list[str] = []
        if ev.selected_options is not None:
            selected = list(ev.selected_options)
        else:
            by_hash = {hashlib.sha256(o.encode("utf-8")).hexdigest(): o for o in (poll.options if poll else [])}
            selected = []
            for h in ev.selected_hashes or ():
                if h.lower() in by_hash:
                    selected.append(by_hash[h.lower()])
                else:
                    unresolved.append(h)
        if poll is None:
            log.warning("vote_for_unknown_poll", instance_id=rt.id, poll_message_id=ev.poll_message_id)
        data: dict[str, Any] = {
            "vote": {"voter": _short(ev.voter), "selectedOptions": selected, "timestamp": ev.timestamp,
                     "pollMessageId": ev.poll_message_id},
            "voterId": ev.voter,
            "chatId": poll.chat_id if poll else ev.chat_id,
            "idempotencyKey": poll.idempotency_key if poll else None,
            "queueId": poll.queue_id if poll else None,
            "caption": poll.caption if poll else None,
            "options": poll.options if poll else None,
            "pollKnown": poll is not None,
        }
        if ev.voter.endswith("@lid"):
            data["voterLid"] = ev.voter
        if ev.voter_alt:
            data["voterPhone"] = _short(ev.voter_alt)
        if unresolved:
            data["unresolvedOptionHashes"] = unresolved
        drafts = self.event_drafts(rt, "vote_update", data)
        fresh = await self.store.record_vote(rt.id, ev.poll_message_id, ev.voter, timestamp=ev.timestamp,
                                             selected=selected, voter_alt=ev.voter_alt, now=self.clock.now_ms(),
                                             event=drafts[0] if drafts else None)
        if fresh and drafts:
            self.dispatcher.notify(rt.id)
        log.info("poll_vote", instance_id=rt.id, poll_message_id=ev.poll_message_id, duplicate_or_stale=not fresh)

    async def on_receipt(self, rt: InstanceRuntime, ev: eng.Receipt) -> None:
        """Advance acks (forward only); receipts for ids not yet recorded are held for a minute."""
        if ev.ack not in ACK_ORDER:
            return
        now = self.clock.now_ms()
        for mid in ev.message_ids:
            if not await self._advance_ack(rt, mid, ev.ack, now):
                item = await self.store.get_item_by_message_id(rt.id, mid)
                if item is None:
                    rt.pending_acks[mid] = (ev.ack, now)
        for mid, (_, at) in list(rt.pending_acks.items()):
            if at < now - PENDING_ACK_TTL_MS:
                rt.pending_acks.pop(mid, None)

    async def _advance_ack(self, rt: InstanceRuntime, message_id: str, ack: str, now: int) -> bool:
        def build(item: OutboxItem) -> EventDraft | None:
            drafts = self.event_drafts(rt, "message_ack", {**_item_ref(item), "messageId": message_id, "ack": ack,
                                                           "at": now})
            return drafts[0] if drafts else None

        item = await self.store.advance_ack(rt.id, message_id, ack, ACK_ORDER, now=now, event_for=build)
        if item is not None:
            self.dispatcher.notify(rt.id)
        return item is not None

    # -- webhooks --------------------------------------------------------------------------------
    def event_drafts(self, rt: InstanceRuntime, event: str, data: dict[str, Any]) -> list[EventDraft]:
        """The event as a stored draft, or [] when the instance has no URL or filters it out."""
        rec = rt.record
        if not rec.webhook_url:
            return []
        if rec.webhook_events and event not in rec.webhook_events:
            return []
        body = signing.serialize({"event": event, "instanceId": rt.id, "data": data})
        return [EventDraft(event_id="evt_" + uuid.uuid4().hex, instance_id=rt.id, event=event, body=body)]

    async def store_events(self, rt: InstanceRuntime, drafts: list[EventDraft]) -> None:
        """Store events that are not part of another change, then wake the dispatcher."""
        if drafts:
            await self.store.add_events(drafts, self.clock.now_ms())
            self.dispatcher.notify(rt.id)

    def _target_for(self, instance_id: str) -> Target | None:
        rt = self.instances.get(instance_id)
        if rt is None:
            return None
        return Target(url=rt.record.webhook_url, secret=rt.record.webhook_secret or self.settings.webhook_secret)

    async def replay_events(self, instance_id: str, event_id: str | None) -> int:
        """Put dead letters back for delivery; returns how many."""
        rt = self.get(instance_id)
        n = await self.store.replay_events(rt.id, event_id=event_id, now=self.clock.now_ms())
        if event_id is not None and n == 0:
            raise NotFound(f"no dead letter {event_id} on instance {rt.id}")
        self.dispatcher.notify(rt.id)
        return n

    async def list_events(self, instance_id: str, status: str | None = None, limit: int = 50,
                          offset: int = 0) -> list[EventRecord]:
        """Webhook events of an instance, newest first (``pending`` | ``delivered`` | ``dead``). Raises NotFound."""
        rt = self.get(instance_id)
        return await self.store.list_events(rt.id, status=status, limit=limit, offset=offset)

    # -- status ----------------------------------------------------------------------------------
    async def summary(self, instance_id: str) -> dict[str, Any]:
        """The few figures a list of instances shows (cheaper than :meth:`status`). Raises NotFound.

        Shape: ``{"depth", "uncertain", "sent1h", "lastError", "dead"}``.
        """
        rt = self.get(instance_id)
        now = self.clock.now_ms()
        stats = await self.store.queue_stats(rt.id)
        sent1h = await self.store.count_sent_since(rt.id, now - ratelimit.HOUR_MS)
        events = await self.store.event_stats(rt.id)
        return {"depth": stats.depth, "uncertain": stats.by_status.get("uncertain", 0), "sent1h": sent1h,
                "lastError": rt.last_error, "dead": events["dead"]}

    async def status(self, instance_id: str) -> dict[str, Any]:
        """The native status document (DESIGN §5), counters derived from persisted records."""
        rt = self.get(instance_id)
        now = self.clock.now_ms()
        store = self.store
        stats = await store.queue_stats(rt.id)
        history = await store.send_history(rt.id, now - ratelimit.HOUR_MS)
        limits = self.limits_for(rt.record)
        per_min, per_hour = ratelimit.usage(history, now)
        nxt = ratelimit.next_allowed(history, now, limits)
        used, window = await rt.supervisor.budget()
        events = await store.event_stats(rt.id)
        transitions = await store.transitions(rt.id, 10)
        sent24 = await store.count_sent_since(rt.id, now - 86_400_000)
        failures1h = await store.count_failures_since(rt.id, now - ratelimit.HOUR_MS)
        disconnects1h = await store.count_transitions_to(rt.id, "disconnected", now - ratelimit.HOUR_MS)
        return {
            "instance": {"id": rt.id, "name": rt.record.name, "state": rt.state.value,
                         "status": lifecycle.external_status(rt.state, rt.qr is not None),
                         "since": rt.state_since, "reason": rt.state_reason, "createdAt": rt.record.created_at,
                         "terminal": rt.state in lifecycle.TERMINAL, "restrictedUntil": rt.restricted_until},
            "client": {"phoneNumber": rt.phone, "displayName": rt.push_name, "engine": self.engine_factory.name},
            "transitions": [{"at": tr.at, "from": tr.from_state, "to": tr.to_state, "reason": tr.reason}
                            for tr in transitions],
            "queue": {"depth": stats.depth, "byStatus": stats.by_status, "maxSize": self.settings.max_queue_size,
                      "oldestQueuedAt": stats.oldest_queued_at,
                      "oldestAgeMs": now - stats.oldest_queued_at if stats.oldest_queued_at else None,
                      "uncertain": stats.by_status.get("uncertain", 0),
                      "sendLoopRunning": rt.sendloop.running},
            "rateLimits": {
                "sendsPerMinute": {"current": per_min, "max": limits.per_minute,
                                   "limited": per_min >= limits.per_minute},
                "sendsPerHour": {"current": per_hour, "max": limits.per_hour, "limited": per_hour >= limits.per_hour},
                "intervalMs": limits.interval_ms, "nextAllowedAt": nxt.at_ms, "nextAllowedReason": nxt.reason},
            "counters": {"sent24h": sent24, "sent1h": per_hour, "failures1h": failures1h,
                         "disconnects1h": disconnects1h},
            "reconnection": {"restartsInWindow": len(used), "maxRestarts": self.settings.max_restarts_per_window,
                             "windowMinutes": self.settings.restart_window_minutes,
                             "budgetFreesAt": used[0] + window if used else None,
                             "consecutiveFailures": rt.supervisor.failures},
            "webhook": await self._webhook_status(rt, events, now),
            "lastError": rt.last_error,
        }

    async def _webhook_status(self, rt: InstanceRuntime, stats: dict[str, Any], now: int) -> dict[str, Any]:
        """Delivery status: stored counts (backlog, dead) plus this process's lane health (epoch ms).

        ``lastError`` is the newest failed attempt seen by this process, else the newest error
        stored on an event; ``failing`` is true while the lane's latest attempts keep failing.
        """
        head = await self.store.head_event(rt.id)
        health = self.dispatcher.health(rt.id)
        out: dict[str, Any] = {"url": webhookurl.redact(rt.record.webhook_url), "events": rt.record.webhook_events,
                               "secretConfigured": bool(rt.record.webhook_secret or self.settings.webhook_secret),
                               **stats}
        out.update({"oldestPendingAt": head.created_at if head else None,
                    "oldestPendingAgeMs": now - head.created_at if head else None,
                    "nextAttemptAt": head.next_attempt_at if head else None,
                    "headAttempts": head.attempts if head else 0,
                    "lastAttemptAt": None, "lastErrorAt": None, "lastStatusCode": None,
                    "consecutiveFailures": 0, "failing": False})
        if health is not None:
            if health.last_success_at is not None:
                out["lastSuccessAt"] = max(out.get("lastSuccessAt") or 0, health.last_success_at)
            if health.last_error is not None:
                out.update(lastError=health.last_error, lastErrorAt=health.last_error_at,
                           lastStatusCode=health.last_status_code)
            out.update(lastAttemptAt=health.last_attempt_at, consecutiveFailures=health.consecutive_failures,
                       failing=health.consecutive_failures > 0)
        return out


    # -- fleet view (dashboard list: one aggregate read per page) ---------------------------------
    async def fleet_summaries(self, instance_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """List figures of many instances (None: all) from ONE aggregate store read; unknown ids are left out.

        Shape per id: ``{"depth", "uncertain", "sent1h", "byStatus", "oldestQueuedAt" (epoch ms | None),
        "deadLetters", "webhookBacklog", "webhookFailing", "lastError"}``. ``webhookFailing`` follows
        the same rule as ``webhook.failing`` of :meth:`status`.
        """
        now = self.clock.now_ms()
        wanted = list(self.instances) if instance_ids is None else instance_ids
        figures = await self.store.fleet_figures(instance_ids, sent_since=now - ratelimit.HOUR_MS)
        out: dict[str, dict[str, Any]] = {}
        for iid in wanted:
            rt = self.instances.get(iid)
            if rt is None:
                continue
            f = figures.get(iid) or FleetFigures()
            health = self.dispatcher.health(iid)
            out[iid] = {"depth": f.depth, "uncertain": f.by_status.get("uncertain", 0), "sent1h": f.sent,
                        "byStatus": f.by_status, "oldestQueuedAt": f.oldest_open_at,
                        "deadLetters": f.events_dead, "webhookBacklog": f.events_pending,
                        "webhookFailing": health is not None and health.consecutive_failures > 0,
                        "lastError": rt.last_error}
        return out


    async def get_event(self, instance_id: str, event_id: str) -> EventRecord:
        """One webhook event (payload, attempts, last response) of an instance. Raises NotFound."""
        rt = self.get(instance_id)
        ev = await self.store.get_event(rt.id, event_id)
        if ev is None:
            raise NotFound(f"no webhook event {event_id} on instance {rt.id}")
        return ev


async def _ignore_events(_event: eng.EngineEvent) -> None:
    return None


def _short(jid: str) -> str:
    """wa-hub's historic voter/sender form: bare digits for people, the full id otherwise."""
    return chatid.phone_number(jid) or jid


def _item_ref(item: OutboxItem) -> dict[str, Any]:
    return {"queueId": item.queue_id, "idempotencyKey": item.idempotency_key, "chatId": item.chat_id,
            "kind": item.kind.value}


def _content(kind: ItemKind, body: dict[str, Any]) -> dict[str, Any]:
    if kind == ItemKind.TEXT:
        msg = body.get("message")
        if msg is None:
            raise InvalidInput("message is required")
        if not isinstance(msg, str):
            raise InvalidInput("message must be a string")
        if not msg.strip():
            raise InvalidInput("message must not be empty")
        if len(msg) > MAX_TEXT_LENGTH:
            raise InvalidInput(f"message is longer than {MAX_TEXT_LENGTH} characters")
        return {"message": msg}
    caption = body.get("caption")
    if caption is None:
        raise InvalidInput("caption is required")
    if not isinstance(caption, str) or not caption.strip():
        raise InvalidInput("caption must be a non-empty string")
    if len(caption) > MAX_CAPTION_LENGTH:
        raise InvalidInput(f"caption is longer than {MAX_CAPTION_LENGTH} characters")
    options = body.get("options")
    if not isinstance(options, list):
        raise InvalidInput(f"options must be a list of {MIN_POLL_OPTIONS}-{MAX_POLL_OPTIONS} strings")
    if not MIN_POLL_OPTIONS <= len(options) <= MAX_POLL_OPTIONS:
        raise InvalidInput(f"options must have {MIN_POLL_OPTIONS} to {MAX_POLL_OPTIONS} entries, got {len(options)}")
    cleaned: list[str] = []
    for i, opt in enumerate(options):
        if not isinstance(opt, str) or not opt.strip():
            raise InvalidInput(f"options[{i}] must be a non-empty string")
        if len(opt) > MAX_POLL_OPTION_LENGTH:
            raise InvalidInput(f"options[{i}] is longer than {MAX_POLL_OPTION_LENGTH} characters")
        cleaned.append(opt)
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("options must be distinct")
    multiple = body.get("multipleAnswers", False)
    if multiple is None:
        multiple = False
    if not isinstance(multiple, bool):
        raise InvalidInput("multipleAnswers must be true or false")
    return {"caption": caption, "options": cleaned, "multipleAnswers": multiple}


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
