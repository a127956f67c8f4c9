"""The WaAPI actions besides text and polls: what goes through the outbox, and what goes to the engine directly.

Through the outbox (idempotency key, rate windows, pacing, uncertain handling), because each puts
something in a chat: media, location, vCard, reaction, edit, delete-for-everyone, forward. This
room prepares their bodies — the file fetched and checked (:mod:`wahub.runtime.media`), the target
message resolved to its chat (:meth:`SendActions.target`) — and enqueues them.

Directly to the engine, with ``ENGINE_ACTION_TIMEOUT_MS``: ``send-seen``, typing and presence
(nothing lasting reaches the chat; a late one is worthless) and ``download-media``.

Message ids: wa-hub answers sends with the bare WhatsApp id (``3EB0…``); whatsapp-web.js clients
also pass the serialised form ``true_<chat>_<id>`` / ``false_<chat>_<id>[_<participant>]``, which
names the chat and whether this account sent it. A bare id is looked up among the messages this
hub sent; any other bare id needs ``chatId`` in the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from wahub.domain import chatid
from wahub.domain.errors import (
    Conflict,
    EngineError,
    InvalidInput,
    NotFound,
    NotSupported,
    ServiceUnavailable,
    ShuttingDown,
    Unprocessable,
)
from wahub.domain.lifecycle import State
from wahub.domain.outbox import EnqueueResult, ItemKind, ItemStatus
from wahub.engines import base as eng
from wahub.engines.cloud.engine import CloudEngine
from wahub.runtime.media import MediaSource
from wahub.runtime.outbox import Outbox
from wahub.runtime.registry import InstanceRuntime, Registry
from wahub.store.base import OutboxPort

T = TypeVar("T")
EDIT_WINDOW_MS = 15 * 60_000  # WhatsApp accepts edits for 15 minutes after the send
MAX_CHAINS = 10_000  # messages whose last keyless reaction/edit is remembered (see SendActions._chained)
PRESENCE_STATES = ("typing", "recording", "paused", "available", "unavailable")
CAPABILITY = {ItemKind.MEDIA: "media", ItemKind.LOCATION: "locations", ItemKind.VCARD: "contacts",
              ItemKind.REACTION: "reactions", ItemKind.EDIT: "edits", ItemKind.REVOKE: "revokes",
              ItemKind.FORWARD: "forwards"}


_STOPPED_CAPABILITIES = {"cloud": CloudEngine.capabilities}  # what a stopped instance's engine could do


@dataclass(frozen=True)
class Target:
    """A message acted upon: its chat, bare id, whether this account sent it, its sender in a group."""

    chat_id: str
    message_id: str
    from_me: bool
    participant: str | None = None
    sent_item_kind: ItemKind | None = None  # when this hub sent it: the item's kind
    sent_content: dict[str, Any] | None = None
    sent_at: int | None = None


def parse_serialized(value: str) -> tuple[bool, str, str, str | None] | None:
    """``(from_me, chat, id, participant)`` of ``true_<chat>_<id>[_<participant>]``, None for a bare id."""
    head, sep, rest = value.partition("_")
    if not sep or head not in ("true", "false"):
        return None
    parts = rest.split("_")
    if len(parts) < 2 or "@" not in parts[0] or not parts[1]:
        return None
    participant = parts[2] if len(parts) > 2 and "@" in parts[2] else None
    return head == "true", parts[0], parts[1], participant


class SendActions:
    """Prepare and enqueue the other send actions; call the engine for seen, presence and downloads."""

    def __init__(self, outbox: Outbox, store: OutboxPort, registry: Registry, media: MediaSource, *,
                 action_timeout_ms: int, download_max_bytes: int, allow_status_broadcast: bool = False) -> None:
        self.outbox = outbox
        self.store = store
        self.registry = registry
        self.media = media
        self.action_timeout_ms = action_timeout_ms
        self.download_max_bytes = download_max_bytes
        self.allow_status_broadcast = allow_status_broadcast
        # (instance, kind, target) → (queue id, change, its "after") of the newest keyless reaction/edit
        self._changes: dict[tuple[str, ItemKind, str], tuple[str, str, Any]] = {}

    # -- through the outbox ---------------------------------------------------------------------
    async def enqueue(self, instance_id: str, kind: ItemKind, body: dict[str, Any], *, header_key: str | None,
                      retry: bool = False) -> EnqueueResult:
        """Prepare ``body`` for ``kind`` and enqueue it (see :meth:`Outbox.enqueue` for the answers).

        Raises InvalidInput naming the field, NotFound (instance or target message), NotSupported (501)
        when the instance's engine cannot send ``kind``, and what ``Outbox.enqueue`` raises.
        """
        rt = self.registry.get_rt(instance_id)
        self._check_capability(rt, kind)
        data = dict(body)
        identity: dict[str, Any] | None = None
        if kind == ItemKind.MEDIA:
            chatid.normalize(data.get("chatId"), field="chatId", default_country_code=rt.record.default_country_code,
                             allow_status_broadcast=self.allow_status_broadcast)  # before any fetch
            if data.get("mediaUrl") is not None:  # the request names a URL: a retry is the same message
                identity = {k: v for k, v in data.items() if k not in ("chatId", "idempotencyKey", "retry")}
            data = await self._unless_stopping(self.media.resolve(data))
        elif kind in (ItemKind.REACTION, ItemKind.EDIT, ItemKind.REVOKE):
            data = await self._targeted(rt, kind, data)
        elif kind == ItemKind.FORWARD:
            data = await self._forwarded(rt, data)
        chain = (rt.id, kind, str(data.get("messageId"))) if kind in (ItemKind.REACTION, ItemKind.EDIT) \
            and header_key is None and data.get("idempotencyKey") is None else None
        if chain is not None:
            data = self._chained(chain, data)
        result = await self.outbox.enqueue(rt.id, kind, data, header_key=header_key, retry=retry, identity=identity)
        if chain is not None:
            self._changes.pop(chain, None)
            self._changes[chain] = (result.item.queue_id, self._change_of(data), data.get("after"))
            if len(self._changes) > MAX_CHAINS:
                del self._changes[next(iter(self._changes))]  # the least recently changed message
        return result

    @staticmethod
    def _change_of(data: dict[str, Any]) -> str:
        return str(data.get("reaction") if "reaction" in data else data.get("message"))

    def _chained(self, chain: tuple[str, ItemKind, str], data: dict[str, Any]) -> dict[str, Any]:
        """Tie a keyless reaction or edit to the previous change of the same message.

        Without a key, the same payload within ``AUTO_IDEMPOTENCY_WINDOW_SECONDS`` is one send; but 👍 → ❤️ → 👍
        must end on 👍. So a change that differs from the previous one of that message names it
        (``after``), which makes its payload new; a repeat of the previous change (a client's retry)
        names what that one named, so it stays a replay. Kept in memory: a restart forgets the chain.
        """
        previous = self._changes.get(chain)
        if previous is None:
            return data
        queue_id, change, after = previous
        if self._change_of(data) == change:
            return {**data, "after": after} if after else data
        return {**data, "after": queue_id}

    def _check_capability(self, rt: InstanceRuntime, kind: ItemKind) -> None:
        """501 when the instance's engine (running, or by its kind when stopped) cannot send ``kind``."""
        caps = rt.engine.capabilities if rt.engine is not None else _STOPPED_CAPABILITIES.get(rt.record.engine)
        name = CAPABILITY.get(kind)
        if caps is not None and name is not None and not getattr(caps, name, False):
            raise NotSupported(f"the {rt.record.engine} engine of instance {rt.id} cannot send {kind.value} messages",
                              engine=rt.record.engine)

    async def target(self, rt: InstanceRuntime, message_id: object, chat: object = None) -> Target:
        """Resolve a ``messageId`` (serialised or bare, with an optional ``chatId``). Raises InvalidInput/NotFound."""
        if not isinstance(message_id, str) or not message_id.strip():
            raise InvalidInput("messageId is required (a string)")
        cc = rt.record.default_country_code
        parsed = parse_serialized(message_id.strip())
        if parsed is not None:
            from_me, chat_raw, bare, participant = parsed
            chat_id = chatid.normalize(chat_raw, field="messageId", default_country_code=cc)
        else:
            bare, from_me, participant = message_id.strip(), False, None
            chat_id = None
        item = await self.store.get_item_by_message_id(rt.id, bare)
        if item is not None and item.status == ItemStatus.SENT:
            return Target(item.chat_id, bare, True, None, item.kind, dict(item.payload), item.sent_at)
        if chat_id is None and chat not in (None, ""):
            chat_id = chatid.normalize(chat, field="chatId", default_country_code=cc)
        if chat_id is None:
            raise NotFound(f"messageId {bare} is not a message this hub sent; pass the serialized id "
                           "(false_<chat>_<id>) or chatId")
        return Target(chat_id, bare, from_me, participant)

    async def _targeted(self, rt: InstanceRuntime, kind: ItemKind, data: dict[str, Any]) -> dict[str, Any]:
        tgt = await self.target(rt, data.get("messageId"), data.get("chatId"))
        if kind == ItemKind.REVOKE and data.get("forEveryone") not in (None, True, False):
            raise InvalidInput("forEveryone must be true or false")
        if kind == ItemKind.REVOKE and data.get("forEveryone") is False:
            raise InvalidInput("forEveryone=false (delete on this device only) is not offered: the engines delete "
                               "for everyone; send true or leave it out")
        if kind == ItemKind.EDIT:
            if not tgt.from_me:
                raise InvalidInput("messageId: only a message this account sent can be edited")
            if tgt.sent_item_kind not in (None, ItemKind.TEXT):
                raise Unprocessable(f"messageId: a {tgt.sent_item_kind.value} message cannot be edited, only text")
            if tgt.sent_at is not None and self.outbox.clock.now_ms() - tgt.sent_at > EDIT_WINDOW_MS:
                raise Unprocessable("messageId was sent more than 15 minutes ago; WhatsApp accepts edits for "
                                    "15 minutes", reason="edit_window_over")
        out = {k: v for k, v in data.items() if k not in ("forEveryone",)}
        out.update(chatId=tgt.chat_id, messageId=tgt.message_id, fromMe=tgt.from_me)
        if tgt.participant:
            out["participant"] = tgt.participant
        return out

    async def _forwarded(self, rt: InstanceRuntime, data: dict[str, Any]) -> dict[str, Any]:
        tgt = await self.target(rt, data.get("messageId"))
        if tgt.sent_item_kind is None or tgt.sent_content is None:
            raise Unprocessable(f"messageId {tgt.message_id}: wa-hub keeps no copy of messages it did not send, "
                                "so only its own sent messages can be forwarded")
        content = tgt.sent_content
        if tgt.sent_item_kind == ItemKind.FORWARD:  # forwarding a forward: the original content
            return {**data, "sourceKind": content["sourceKind"], "content": content["content"],
                    "messageId": tgt.message_id}
        content = {k: v for k, v in content.items() if k != "chatId"}
        return {**data, "sourceKind": tgt.sent_item_kind.value, "content": content, "messageId": tgt.message_id}

    async def _unless_stopping(self, fetch: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """``fetch``, ended with ShuttingDown (503 + Retry-After) when the process is told to stop meanwhile."""
        work = asyncio.ensure_future(fetch)
        stop = asyncio.ensure_future(self.outbox.stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
        if not work.done() or work.cancelled():
            raise ShuttingDown("wa-hub is shutting down; send again shortly", retry_after_s=5)
        return work.result()

    # -- straight to the engine ------------------------------------------------------------------
    def _ready_engine(self, instance_id: str) -> tuple[InstanceRuntime, eng.Engine]:
        rt = self.registry.engine_rt(instance_id)
        if rt.state != State.READY or rt.engine is None:
            raise Conflict(f"instance is {rt.state.value}, not ready", instanceState=rt.state.value)
        return rt, rt.engine

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.action_timeout_ms / 1000):
                return await call
        except TimeoutError:
            raise ServiceUnavailable(f"the engine did not answer {what} within {self.action_timeout_ms} ms "
                                     "(ENGINE_ACTION_TIMEOUT_MS)") from None
        except eng.EngineUnsupported as exc:
            raise NotSupported(str(exc)) from None
        except eng.MediaNotFound as exc:
            raise NotFound(str(exc)) from None
        except eng.MediaTooLarge as exc:
            raise Unprocessable(f"{exc} (MEDIA_DOWNLOAD_MAX_BYTES)", reason="media_too_large") from None
        except EngineError as exc:
            raise ServiceUnavailable(f"{what} failed: {exc}") from None

    async def seen(self, instance_id: str, chat: object) -> str:
        """Mark ``chat`` read (blue ticks); returns the chat id. Raises Conflict when not ready."""
        rt, engine = self._ready_engine(instance_id)
        chat_id = chatid.normalize(chat, field="chatId", default_country_code=rt.record.default_country_code)
        await self._call("send-seen", engine.send_seen(chat_id))
        return chat_id

    async def presence(self, instance_id: str, chat: object, state: str) -> str | None:
        """Show ``state`` (:data:`PRESENCE_STATES`) in ``chat`` (None: the account's own presence)."""
        if state not in PRESENCE_STATES:
            raise InvalidInput(f"state must be one of {', '.join(PRESENCE_STATES)}")
        rt, engine = self._ready_engine(instance_id)
        chat_id = None
        if state not in ("available", "unavailable"):
            chat_id = chatid.normalize(chat, field="chatId", default_country_code=rt.record.default_country_code)
        await self._call(f"presence {state}", engine.send_presence(chat_id, state))
        return chat_id

    async def download(self, instance_id: str, message_id: object, chat: object = None) -> eng.DownloadedMedia:
        """The media of a received message, at most ``MEDIA_DOWNLOAD_MAX_BYTES``; never stored by the hub."""
        rt, engine = self._ready_engine(instance_id)
        if not isinstance(message_id, str) or not message_id.strip():
            raise InvalidInput("messageId is required (a string)")
        parsed = parse_serialized(message_id.strip())
        bare = parsed[2] if parsed else message_id.strip()
        chat_id = parsed[1] if parsed else (chat if isinstance(chat, str) else "")
        return await self._call("download-media", engine.download_media(chat_id, bare, self.download_max_bytes))
