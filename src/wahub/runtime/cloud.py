"""The cloud room: what the runtime does for Cloud API instances that other engines do not need.

* credentials: parsed from the create request, sealed with ``WAHUB_CLOUD_CREDENTIALS_KEY``
  (:mod:`wahub.engines.cloud.crypto`) and stored; opened again for the engine and the webhook
  receiver (:meth:`CloudRoom.credentials`). They are never logged nor answered after creation.
* the 24-hour service window: each chat's last inbound time (messages and button replies) is
  stored when Meta's webhook reports it; a send to a cloud instance is screened at enqueue
  (:meth:`CloudRoom.prepare` / :meth:`CloudRoom.admit`) and refused with 422 when only a template
  could reach the chat and none is chosen — never queued to fail later.
* webhook events (:meth:`CloudRoom.deliver`): messages, votes and receipts go to the inbound room,
  as an engine's data events do; a ``failed`` status fails the sent item with ``message_failed``.

Events are handed to the inbound room directly rather than through the running engine's sink:
Meta's calls do not depend on the engine object, and a message or vote that arrives while the
instance is stopped or logged out must not be dropped.
"""

from __future__ import annotations

from typing import Any

import structlog

from wahub.domain.clock import Clock
from wahub.domain.errors import InvalidInput, NotFound, PermanentSendError, Unprocessable
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.engines import base as eng
from wahub.engines.cloud import polls, webhook
from wahub.engines.cloud.account import CloudAccount
from wahub.engines.cloud.crypto import CredentialsCipher, CredentialsKeyError
from wahub.engines.cloud.errors import OUTSIDE_SERVICE_WINDOW, OutsideServiceWindow
from wahub.engines.cloud.receiver import CloudWebhookReceiver
from wahub.runtime.events import Events, item_ref
from wahub.runtime.inbound import Inbound
from wahub.runtime.registry import InstanceRuntime, Registry
from wahub.store.base import CloudPort, OutboxPort

log = structlog.get_logger("wahub.cloud")

KEY_SETTING = "WAHUB_CLOUD_CREDENTIALS_KEY"


class CloudRoom:
    """Credentials, the service window and webhook hand-over for ``engine: "cloud"`` instances."""

    def __init__(self, store: CloudPort, items: OutboxPort, clock: Clock, registry: Registry, events: Events,
                 inbound: Inbound, *, credentials_key: str | None) -> None:
        self.store = store
        self.items = items
        self.clock = clock
        self.registry = registry
        self.events = events
        self.inbound = inbound
        self._cipher = CredentialsCipher(credentials_key) if credentials_key else None
        self._opened: dict[str, tuple[str, CloudAccount]] = {}  # instance id -> (sealed, account)
        self.receiver = CloudWebhookReceiver(self.credentials, self.deliver)

    # -- credentials ---------------------------------------------------------------------------
    def parse(self, data: Any) -> CloudAccount:
        """The ``cloud`` object of a create request. Raises InvalidInput naming the field or the setting."""
        if self._cipher is None:
            raise InvalidInput(f"cloud instances need {KEY_SETTING} (a Fernet key) set on the server to store "
                               "their credentials encrypted")
        if not isinstance(data, dict):
            raise InvalidInput("cloud is required for engine \"cloud\": an object with phoneNumberId, wabaId, "
                               "accessToken, appSecret and verifyToken")
        try:
            return CloudAccount.from_json(data)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

    async def save(self, instance_id: str, account: CloudAccount) -> None:
        """Seal and store an instance's credentials. Raises Conflict (number used by another instance)."""
        if self._cipher is None:
            raise InvalidInput(f"{KEY_SETTING} is not set")
        sealed = self._cipher.seal(account)
        await self.store.put_cloud_credentials(instance_id, sealed=sealed, phone_number_id=account.phone_number_id,
                                               now=self.clock.now_ms())
        self._opened[instance_id] = (sealed, account)
        log.info("cloud_credentials_stored", instance_id=instance_id, phone_number_id=account.phone_number_id)

    async def credentials(self, instance_id: str) -> CloudAccount | None:
        """The instance's account, or None (not a cloud instance, or its credentials do not open)."""
        row = await self.store.get_cloud_credentials(instance_id)
        if row is None or self._cipher is None:
            return None
        cached = self._opened.get(instance_id)
        if cached is not None and cached[0] == row.sealed:
            return cached[1]
        try:
            account = self._cipher.open(row.sealed)
        except (CredentialsKeyError, ValueError):
            log.error("cloud_credentials_unreadable", instance_id=instance_id, setting=KEY_SETTING)
            return None
        self._opened[instance_id] = (row.sealed, account)
        return account

    def forget(self, instance_id: str) -> None:
        """Drop the opened account of a deleted instance."""
        self._opened.pop(instance_id, None)

    async def last_inbound(self, instance_id: str, chat_id: str) -> int | None:
        """When ``chat_id`` last wrote to the instance (epoch ms), None if never."""
        return await self.store.last_chat_inbound(instance_id, chat_id)

    # -- enqueue screening ---------------------------------------------------------------------
    def screens(self, rt: InstanceRuntime) -> bool:
        """Cloud instances are screened at enqueue; the others are not."""
        return rt.record.engine == "cloud"

    async def prepare(self, rt: InstanceRuntime, kind: ItemKind, body: dict[str, Any],
                      fields: dict[str, Any]) -> dict[str, Any]:
        """The fields to store for a send: a cloud poll's ``template`` is checked and kept with the item.

        Other engines have no templates: the field is ignored for them. Raises InvalidInput.
        """
        template = body.get("template")
        if rt.record.engine != "cloud" or template is None:
            return fields
        if kind != ItemKind.POLL:
            raise InvalidInput("template is only for create-poll (a text goes out only inside the service window)")
        if not isinstance(template, dict):
            raise InvalidInput("template must be an object {name, language, bodyParameters?}")
        try:
            parsed = polls.PollTemplate.from_json(template)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return {**fields, "template": parsed.to_json()}

    async def admit(self, rt: InstanceRuntime, kind: ItemKind, chat: str, fields: dict[str, Any]) -> None:
        """Refuse (422) a new send Meta would not deliver: outside the window without a template.

        Also refuses (400) a poll the Cloud API cannot carry (more than 10 options, too long).
        """
        if rt.record.engine != "cloud":
            return
        last = await self.store.last_chat_inbound(rt.id, chat)
        is_open = polls.window_open(last, self.clock.now_ms())
        try:
            if kind == ItemKind.POLL:
                account = await self.credentials(rt.id)
                raw = fields.get("template")
                chosen = polls.PollTemplate.from_json(raw) if raw else (account.poll_template if account else None)
                polls.poll_message(str(fields["caption"]), list(fields["options"]), template=chosen, window=is_open,
                                   list_button=account.list_button if account else "Choose")
            elif not is_open:
                raise OutsideServiceWindow("the chat's 24-hour service window is closed (no message from it in "
                                           "the last 24 hours): only a poll with an approved template can reach it")
        except OutsideServiceWindow as exc:
            raise Unprocessable(str(exc), reason=OUTSIDE_SERVICE_WINDOW, lastInboundAt=last) from None
        except PermanentSendError as exc:
            raise InvalidInput(f"options: {exc}", reason=exc.reason) from None

    # -- webhook events ------------------------------------------------------------------------
    async def deliver(self, instance_id: str, event: webhook.CloudEvent) -> None:
        """Hand one event from Meta's webhook to the runtime. Raises NotFound (instance not loaded)."""
        rt = self.registry.get(instance_id)
        if rt is None:
            raise NotFound(f"instance {instance_id} is not loaded")
        if isinstance(event, webhook.DeliveryFailed):
            await self._failed(rt, event)
            return
        if isinstance(event, eng.InboundMessage | eng.PollVote) and not getattr(event, "from_me", False):
            now = self.clock.now_ms()
            at = event.timestamp if 0 < event.timestamp <= now else now
            await self.store.note_chat_inbound(rt.id, event.chat_id, at)
        if not await self.inbound.on_event(rt, event):
            log.debug("cloud_event_ignored", instance_id=rt.id, engine_event=type(event).__name__)

    async def _failed(self, rt: InstanceRuntime, ev: webhook.DeliveryFailed) -> None:
        """Meta could not deliver a message it had accepted: the sent item fails with ``message_failed``."""
        item = await self.items.get_item_by_message_id(rt.id, ev.message_id)
        if item is None or item.status != ItemStatus.SENT:
            log.warning("cloud_failed_status_unmatched", instance_id=rt.id, message_id=ev.message_id,
                        code=ev.code, reason=ev.reason)
            return
        error = f"{ev.title} (Graph {ev.code})" if ev.code is not None else ev.title
        drafts = self.events.drafts(rt.record, "message_failed", {
            **item_ref(item), "messageId": ev.message_id, "error": error, "reason": ev.reason, "code": ev.code,
            "at": ev.timestamp or self.clock.now_ms()})
        changed = await self.items.set_item_status(item.queue_id, from_statuses=[ItemStatus.SENT.value],
                                                   to_status=ItemStatus.FAILED.value, now=self.clock.now_ms(),
                                                   events=drafts, error=error, reason=ev.reason)
        if changed and drafts:
            self.events.notify(rt.id)
        log.warning("cloud_delivery_failed", instance_id=rt.id, queue_id=item.queue_id, code=ev.code,
                    reason=ev.reason, recorded=changed)
