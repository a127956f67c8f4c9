"""The outbox room: enqueue with the idempotency answer, send outcomes, reconciliation, item actions.

The send loop (:mod:`wahub.runtime.sendloop`) reports here through :class:`InstanceOutcomes`;
the API calls :class:`Outbox` directly. Rules come from :mod:`wahub.domain` (content, keys, the
answer); this room carries them out against the outbox store port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from wahub.config import Settings
from wahub.domain import answer, chatid, content, idempotency, ratelimit
from wahub.domain.clock import Clock
from wahub.domain.errors import Conflict, InvalidInput, NotFound, QueueFull, ShuttingDown
from wahub.domain.outbox import EnqueueResult, ItemKind, ItemStatus, OutboxItem, new_queue_id
from wahub.observability import Metrics
from wahub.runtime.events import Events, item_ref
from wahub.runtime.registry import InstanceRuntime, Registry
from wahub.store.base import OutboxPort, QueueFullSignal
from wahub.store.records import InstanceRecord, QueueStats

log = structlog.get_logger("wahub.outbox")

PENDING_ACK_TTL_MS = 60_000
Q, S, U = ItemStatus.QUEUED.value, ItemStatus.SENDING.value, ItemStatus.UNCERTAIN.value


def limits_for(settings: Settings, rec: InstanceRecord) -> ratelimit.Limits:
    """Effective limits of an instance (its overrides, else the settings)."""
    return ratelimit.Limits(
        per_minute=rec.limit_per_minute if rec.limit_per_minute is not None else settings.max_sends_per_minute,
        per_hour=rec.limit_per_hour if rec.limit_per_hour is not None else settings.max_sends_per_hour,
        interval_ms=rec.send_interval_ms if rec.send_interval_ms is not None else settings.send_interval_ms)


class Screen(Protocol):
    """Engine-specific checks at enqueue (implemented by the cloud room)."""

    def screens(self, rt: InstanceRuntime) -> bool:
        """Whether the instance's sends are admitted by :meth:`admit` (costs one key lookup)."""
        ...

    async def prepare(self, rt: InstanceRuntime, kind: ItemKind, body: dict[str, Any],
                      fields: dict[str, Any]) -> dict[str, Any]:
        """The fields to store (and fingerprint) for the send. Raises ``ApiError``."""
        ...

    async def admit(self, rt: InstanceRuntime, kind: ItemKind, chat: str, fields: dict[str, Any]) -> None:
        """Refuse a new send the instance's engine could not deliver. Raises ``ApiError``."""
        ...


class Outbox:
    """Enqueue, outcomes and operator actions on outbox items."""

    def __init__(self, settings: Settings, store: OutboxPort, clock: Clock, events: Events, metrics: Metrics,
                 registry: Registry, spawn: Callable[[Any], object]) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.events = events
        self.metrics = metrics
        self.registry = registry
        self.spawn = spawn
        self.accepting = True
        self.stopping = asyncio.Event()  # set when the process is told to stop: requests in progress end (503)
        self.after_sent: Callable[[InstanceRuntime, str, int], Any] | None = None  # early receipts (inbound)
        self.screen: Screen | None = None  # engine-specific admission (the cloud room's service window)

    # -- enqueue -------------------------------------------------------------------------------
    async def enqueue(self, instance_id: str, kind: ItemKind, body: dict[str, Any], *,
                      header_key: str | None, retry: bool = False,
                      identity: dict[str, Any] | None = None) -> EnqueueResult:
        """Validate and enqueue a send (DESIGN §3.1); never waits for WhatsApp.

        ``identity``: what the request named when that differs from what is stored (a ``mediaUrl``,
        whose bytes may differ on every fetch); the fingerprint is taken of it, so a retry of the same
        request is the same message (replay), not a conflict or a second message.

        An item imported from the existing wa-hub answers any send under its key as a replay of a
        sent message (see :data:`wahub.domain.answer.IMPORTED`).

        Raises InvalidInput (400), NotFound (404), Conflict (409: key reused with another payload,
        or the keyed item failed and ``retry`` was not asked), QueueFull (429), ShuttingDown (503).
        """
        rt = self.registry.get_rt(instance_id)
        if not self.accepting:
            raise ShuttingDown("wa-hub is shutting down; send again shortly", retry_after_s=5)
        chat = chatid.normalize(body.get("chatId"), field="chatId", default_country_code=rt.record.default_country_code,
                                allow_status_broadcast=self.settings.allow_status_broadcast)
        fields = content.validate(kind, body)
        if self.screen is not None:
            fields = await self.screen.prepare(rt, kind, body, fields)
        fp = idempotency.fingerprint(kind.value, chat, identity if identity is not None else fields)
        now = self.clock.now_ms()
        if header_key is not None:
            key, source = idempotency.validate_key(header_key, field="Idempotency-Key header"), "header"
            body_key = body.get("idempotencyKey")
            if body_key is not None and body_key != header_key:
                raise InvalidInput("Idempotency-Key header and idempotencyKey body field differ")
        elif body.get("idempotencyKey") is not None:
            key, source = idempotency.validate_key(body["idempotencyKey"], field="idempotencyKey"), "body"
        else:
            prev = await self.store.latest_derived(rt.id, fp)
            key = idempotency.derived_key(rt.id, fp, (prev.idempotency_key, prev.created_at) if prev else None,
                                          now, self.settings.auto_idempotency_window_seconds)
            source = "derived"
        screen = self.screen
        if screen is not None and screen.screens(rt) and await self.store.find_item_by_key(rt.id, key) is None:
            await screen.admit(rt, kind, chat, fields)  # a replay of a known key is answered as always
        try:
            item, created, depth = await self.store.insert_item(
                queue_id=new_queue_id(now), instance_id=rt.id, idempotency_key=key, key_source=source,
                kind=kind.value, chat_id=chat, payload={"chatId": chat, **fields}, fingerprint=fp, now=now,
                max_open=self.settings.max_queue_size)
        except QueueFullSignal as full:
            per_minute = limits_for(self.settings, rt.record).per_minute
            raise QueueFull(f"queue full ({full.open_count} items, MAX_QUEUE_SIZE={self.settings.max_queue_size}) "
                            f"for instance {rt.id}", retry_after_s=max(1, -(-60 // max(1, per_minute))),
                            instanceState=rt.state.value, queueDepth=full.open_count) from None
        if created:
            log.info("enqueued", instance_id=rt.id, queue_id=item.queue_id, kind=kind.value, key_source=source)
            rt.sendloop.poke(item.next_attempt_at)
            return EnqueueResult(item, replay=False, queue_depth=depth)
        verdict = answer.for_existing(item, fp, retry=retry)
        if verdict == answer.Answer.CONFLICT_PAYLOAD:
            raise Conflict(f"idempotency key {key!r} was already used for a different message on this instance",
                           queueId=item.queue_id, idempotencyKey=key)
        if verdict == answer.Answer.CONFLICT_FINAL:
            raise Conflict(f"the message with idempotency key {key!r} is {item.status.value}"
                           + (f": {item.last_error}" if item.last_error else "")
                           + "; send again with retry=true to queue it again",
                           queueId=item.queue_id, idempotencyKey=key, itemStatus=item.status.value,
                           lastError=item.last_error)
        if verdict == answer.Answer.REQUEUE:
            await self.store.set_item_status(item.queue_id, from_statuses=[item.status.value], to_status=Q,
                                             now=now, reset_attempts=True)
            rt.sendloop.poke()
            fresh = await self.store.get_item(item.queue_id)
            assert fresh is not None
            return EnqueueResult(fresh, replay=True, queue_depth=depth + 1)
        return EnqueueResult(item, replay=True, queue_depth=depth)

    # -- outcomes ------------------------------------------------------------------------------
    async def item_sent(self, rt: InstanceRuntime, item: OutboxItem, message_id: str, at: int, *,
                        reconciled: bool = False) -> bool:
        """Record a send the engine accepted at instant ``at`` (or one proven by evidence).

        Returns False when the item had already left ``sending``/``uncertain``.
        """
        now = self.clock.now_ms()
        data: dict[str, Any] = {**item_ref(item), "messageId": message_id, "sentAt": at}
        if reconciled:
            data["reconciled"] = True
        drafts = self.events.drafts(rt.record, "message_sent", data)
        statuses = (S, U) if reconciled else (S,)
        if not await self.store.mark_sent(item, message_id=message_id, now=now, sent_at=at, events=drafts,
                                          from_statuses=statuses):
            return False
        self.metrics.send_outcome(rt.id, "reconciled" if reconciled else "sent")
        log.info("sent", instance_id=rt.id, queue_id=item.queue_id, message_id=message_id, reconciled=reconciled)
        if drafts:
            self.events.notify(rt.id)
        if self.after_sent is not None:
            await self.after_sent(rt, message_id, now)
        return True

    async def item_failed(self, rt: InstanceRuntime, item: OutboxItem, error: str, reason: str, *,
                          unlog: bool = False) -> None:
        """Record a final failure and its ``message_failed`` webhook."""
        now = self.clock.now_ms()
        drafts = self.events.drafts(rt.record, "message_failed", {**item_ref(item), "error": error, "reason": reason})
        await self.store.mark_failed(item, error=error, reason=reason, now=now, count_attempt=True,
                                     events=drafts, unlog=unlog)
        self.metrics.send_outcome(rt.id, "failed")
        log.warning("send_failed", instance_id=rt.id, queue_id=item.queue_id, reason=reason)
        if drafts:
            self.events.notify(rt.id)

    async def item_uncertain(self, rt: InstanceRuntime, item: OutboxItem, why: str) -> None:
        """An item whose delivery is unknown: mark it ``uncertain``, then report it (or wait for evidence)."""
        now = self.clock.now_ms()
        await self.store.set_item_status(item.queue_id, from_statuses=[S], to_status=U, now=now, error=why,
                                         reason="uncertain")
        fresh = await self.store.get_item(item.queue_id)
        if fresh is not None and fresh.status != ItemStatus.UNCERTAIN:
            return  # evidence reconciled it while the call was still out
        self.after_uncertain(rt, fresh or item, why)

    def after_uncertain(self, rt: InstanceRuntime, item: OutboxItem, why: str | None = None) -> None:
        """Report an uncertain item now, or when its evidence window ends without evidence.

        An item sent under an engine-chosen id waits ``UNCERTAIN_EVIDENCE_WINDOW_SECONDS`` from its
        hand-over for a receipt or echo of that id (see :meth:`reconcile`); only then is it reported.
        """
        self.metrics.send_outcome(rt.id, "uncertain")
        log.warning("send_uncertain", instance_id=rt.id, queue_id=item.queue_id)
        window_ms = self.settings.uncertain_evidence_window_seconds * 1000
        wait = 0
        if item.chosen_message_id and window_ms > 0:
            wait = (item.handed_over_at or self.clock.now_ms()) + window_ms - self.clock.now_ms()
        self.spawn(self._report_later(rt, item.queue_id, max(0, wait), why))

    async def _report_later(self, rt: InstanceRuntime, queue_id: str, wait_ms: int, why: str | None) -> None:
        if wait_ms > 0:
            await self.clock.sleep(wait_ms)
        item = await self.store.get_item(queue_id)
        if item is None or item.status != ItemStatus.UNCERTAIN:
            return  # reconciled (or acted on) meanwhile
        if self.settings.uncertain_policy == "resend":
            await self.store.set_item_status(queue_id, from_statuses=[U], to_status=Q, now=self.clock.now_ms())
            rt.sendloop.poke()
            return
        drafts = self.events.drafts(rt.record, "message_uncertain", {**item_ref(item),
                                                                      "reason": why or item.last_error})
        if await self.store.mark_uncertain_reported(queue_id, self.clock.now_ms(), drafts) and drafts:
            self.events.notify(rt.id)

    async def reconcile(self, rt: InstanceRuntime, message_id: str) -> bool:
        """Evidence (receipt, ack, from-me echo) that ``message_id`` reached WhatsApp.

        An ``uncertain`` (or still ``sending``) item sent under that chosen id, within its evidence
        window, becomes ``sent`` with ``message_sent`` carrying ``reconciled: true``. True when one did.
        """
        item = await self.store.find_by_chosen_id(rt.id, message_id)
        if item is None or item.status not in (ItemStatus.UNCERTAIN, ItemStatus.SENDING):
            return False
        if item.handed_over_at is None:
            return False
        window_ms = self.settings.uncertain_evidence_window_seconds * 1000
        if self.clock.now_ms() - item.handed_over_at > window_ms:
            return False
        return await self.item_sent(rt, item, message_id, item.handed_over_at, reconciled=True)

    # -- operator actions ----------------------------------------------------------------------
    async def cancel_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Cancel a queued item. Raises NotFound or Conflict (not queued)."""
        return await self._change(instance_id, queue_id, [Q], ItemStatus.CANCELED, "only a queued item can be "
                                  "canceled")

    async def retry_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Queue a failed or canceled item again with a fresh attempt count."""
        return await self._change(instance_id, queue_id, [ItemStatus.FAILED.value, ItemStatus.CANCELED.value],
                                  ItemStatus.QUEUED, "only a failed or canceled item can be retried", reset=True)

    async def resend_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Queue an ``uncertain`` item again (the operator accepts a possible duplicate)."""
        return await self._change(instance_id, queue_id, [U], ItemStatus.QUEUED,
                                  "only an uncertain item can be resent", reset=True)

    async def close_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """Close an ``uncertain`` item as canceled without sending it again."""
        return await self._change(instance_id, queue_id, [U], ItemStatus.CANCELED,
                                  "only an uncertain item can be closed")

    async def _change(self, instance_id: str, queue_id: str, from_statuses: list[str], to: ItemStatus, msg: str,
                      reset: bool = False) -> OutboxItem:
        rt = self.registry.get_rt(instance_id)
        item = await self.get_item(rt.id, queue_id)
        changed = await self.store.set_item_status(queue_id, from_statuses=from_statuses, to_status=to.value,
                                                   now=self.clock.now_ms(), reset_attempts=reset)
        if not changed:
            raise Conflict(f"{msg}; item {queue_id} is {item.status.value}", itemStatus=item.status.value)
        rt.sendloop.poke()
        fresh = await self.store.get_item(queue_id)
        assert fresh is not None
        return fresh

    # -- the send loop, seen from outside -----------------------------------------------------------
    def trigger_send(self, instance_id: str) -> None:
        """Wake the instance's send loop now (it sends only while the instance is ready). Raises NotFound."""
        self.registry.get_rt(instance_id).sendloop.poke()

    def send_loop_running(self, instance_id: str) -> bool:
        """True while the instance's send loop task is alive. Raises NotFound."""
        return self.registry.get_rt(instance_id).sendloop.running

    # -- queries -------------------------------------------------------------------------------
    async def get_item(self, instance_id: str, queue_id: str) -> OutboxItem:
        """One item of an instance by ``queueId``. Raises NotFound."""
        item = await self.store.get_item(queue_id)
        if item is None or item.instance_id != instance_id:
            raise NotFound(f"queue item {queue_id} not found on instance {instance_id}")
        return item

    async def get_item_by_key(self, instance_id: str, key: str) -> OutboxItem:
        """One item of an instance by idempotency key. Raises NotFound."""
        rt = self.registry.get_rt(instance_id)
        item = await self.store.find_item_by_key(rt.id, key)
        if item is None:
            raise NotFound(f"no item with idempotency key {key!r} on instance {rt.id}")
        return item

    async def clear_queue(self, instance_id: str) -> int:
        """Cancel every queued item of an instance."""
        rt = self.registry.get_rt(instance_id)
        return await self.store.clear_queue(rt.id, self.clock.now_ms())

    async def list_items(self, instance_id: str, statuses: list[str] | None = None, limit: int = 50,
                         offset: int = 0) -> tuple[list[OutboxItem], int]:
        """A page of an instance's items (oldest first) and the total matching ``statuses``. Raises NotFound."""
        rt = self.registry.get_rt(instance_id)
        return await self.store.list_items(rt.id, statuses=statuses, limit=limit, offset=offset)

    async def queue_stats(self, instance_id: str) -> QueueStats:
        """Counts of an instance's items by status and its oldest open item. Raises NotFound."""
        return await self.store.queue_stats(self.registry.get_rt(instance_id).id)


class InstanceOutcomes:
    """The send loop's :class:`~wahub.runtime.sendloop.Outcomes` for one instance."""

    def __init__(self, outbox: Outbox, rt: InstanceRuntime) -> None:
        self.outbox = outbox
        self.rt = rt

    async def sent(self, item: OutboxItem, message_id: str, at: int) -> None:
        """The engine accepted the item at instant ``at``."""
        await self.outbox.item_sent(self.rt, item, message_id, at)

    async def failed(self, item: OutboxItem, error: str, reason: str, *, unlog: bool = False) -> None:
        """The item failed for good."""
        await self.outbox.item_failed(self.rt, item, error, reason, unlog=unlog)

    async def uncertain(self, item: OutboxItem, why: str) -> None:
        """The item may or may not have reached WhatsApp."""
        await self.outbox.item_uncertain(self.rt, item, why)

    def deferred(self, instance_id: str, reason: str) -> None:
        """A send waits for a limit or a backoff."""
        self.outbox.metrics.deferred(instance_id, reason)

    def retried(self, instance_id: str) -> None:
        """A send is retried later."""
        self.outbox.metrics.send_outcome(instance_id, "retry")
