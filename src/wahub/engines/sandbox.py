"""The ``sandbox`` engine: a simulated WhatsApp for trying wa-hub and for tests (DESIGN §7).

A :class:`SandboxWorld` holds one simulated phone per instance: whether it is linked, its
scripted faults, the messages it "delivered". Linking happens through :meth:`SandboxWorld.scan`
(``POST /sandbox/instances/{id}/scan``) or after ``auto_link_ms``. Linked sessions persist in
``<data_dir>/sandbox/sessions.json`` so a restarted hub reconnects without a new QR, like a
real linked device. When ``delivery_log`` is set every accepted send is appended (one JSON line,
flushed and fsynced) to that file before the send returns, so tests can count what reached
"WhatsApp" across hub crashes.

Faults (:meth:`SandboxWorld.fault`): ``disconnect``, ``auth_failure`` (logged out),
``temporary_ban`` (with ``expires_in_ms``), ``send_error`` (``transient``/``permanent``/
``disconnect``/``answer_lost``/``answer_lost_silent`` for the next ``count`` sends), ``slow_send``
(``latency_ms``), ``drop_after_ready`` (disconnect ``after_ms`` after every ready, ``count`` times),
``never_ready`` (authenticate but never become ready), ``unregistered`` (a chat id that is not on WhatsApp),
``stale_session`` (a linked session that says nothing on start: no QR, no ready; discarding it shows
a QR), ``unreachable`` (``reason`` dns|tls|refused|timeout|network: every start reports
``ConnectFailed``; ``null`` clears), ``resolves_to`` (``chatId`` → ``to``: WhatsApp knows the
number under another id, e.g. a Brazilian mobile without its ninth digit).

Reads, chat settings and groups: :meth:`SandboxEngine.directory` (:mod:`wahub.engines.sandboxdirectory`).

``answer_lost`` and ``answer_lost_silent`` deliver the message (it is in the delivery log under the
caller's id) and then fail the send with ``maybe_sent=True``, as a timeout after the write does on
WhatsApp. With ``answer_lost`` the evidence follows: a ``delivered`` receipt for that id arrives
``evidence_delay_ms`` (default 1 000) later, whatever ``auto_ack`` says; with ``answer_lost_silent``
no receipt, ack or echo for it ever comes.

Inbound traffic of every kind is injected through the Python API (:meth:`SandboxWorld.inject_message`
with ``kind`` and its fields, :meth:`~SandboxWorld.inject_reaction`, :meth:`~SandboxWorld.inject_edit`,
:meth:`~SandboxWorld.inject_revoke`, :meth:`~SandboxWorld.inject_vote` with ``decrypt_failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wahub.domain.errors import (
    DisconnectedError,
    EngineError,
    PermanentSendError,
    TransientSendError,
)
from wahub.engines.base import (
    Authenticated,
    Capabilities,
    ConnectFailed,
    Disconnected,
    DownloadedMedia,
    Engine,
    EngineEvent,
    EngineFactory,
    EngineStateConflict,
    EventSink,
    Location,
    LoggedOut,
    Media,
    MediaNotFound,
    MediaTooLarge,
    MessageRef,
    PairCode,
    QrCode,
    QrTimeout,
    Ready,
    Receipt,
    SendResult,
)
from wahub.engines.sandboxdirectory import SandboxDirectory
from wahub.engines.sandboxworld import _ANSWER_LOST, Delivery, Phone, SandboxWorld

__all__ = ["Delivery", "Phone", "SandboxEngine", "SandboxFactory", "SandboxWorld"]


class SandboxEngine(Engine):
    """One simulated connection; all timing goes through the world's clock."""

    capabilities = Capabilities(polls=True, typing=True, pairing_code=True, number_check=True,
                                chosen_message_ids=True, media=True, locations=True, contacts=True, reactions=True,
                                edits=True, revokes=True, forwards=True, seen=True, presence=True,
                                media_download=True)

    def __init__(self, world: SandboxWorld, instance_id: str, sink: EventSink) -> None:
        self.world = world
        self.instance_id = instance_id
        self.sink = sink
        self.phone = world.phone(instance_id)
        self.phone.engine = self
        self.connected = False
        self.showing_qr = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def emit(self, event: EngineEvent) -> None:
        """Hand an event to the runtime (the sandbox's address book learns from it first)."""
        self.world.directories.observe(self.instance_id, event)
        await self.sink(event)

    def directory(self) -> SandboxDirectory:
        """Reads, chat settings and groups against the simulated world."""
        self.world.directories.book(self.instance_id).unregistered = self.phone.unregistered
        return SandboxDirectory(self.world.directories, self.instance_id)

    def _spawn(self, coro_fn: Callable[[], Any]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro_fn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self._closed = False
        if self.phone.unreachable is not None:
            self._spawn(self._unreachable)
        elif self.phone.linked and self.phone.stale_session:
            return  # the stale session neither logs in nor asks for a QR
        elif self.phone.linked:
            self._spawn(self._come_online)
        else:
            self._spawn(self._show_qr_loop)

    async def _unreachable(self) -> None:
        await self.world.clock.sleep(1)
        reason = self.phone.unreachable
        if not self._closed and reason is not None:
            await self.emit(ConnectFailed(reason, f"sandbox: web.whatsapp.com unreachable ({reason})"))

    async def _come_online(self) -> None:
        await self.world.clock.sleep(1)
        if self._closed:
            return
        if self.phone.never_ready:
            await self.emit(Authenticated())
            return
        self.connected = True
        self.showing_qr = False
        await self.emit(Ready(phone=self.phone.phone, push_name=self.phone.push_name,
                              jid=f"{self.phone.phone}@c.us"))
        if self.phone.drop_after_ready_ms is not None and self.phone.drop_count > 0:
            self.phone.drop_count -= 1
            delay = self.phone.drop_after_ready_ms
            self._spawn(lambda: self._drop_later(delay))

    async def _drop_later(self, delay_ms: int) -> None:
        await self.world.clock.sleep(delay_ms)
        if not self._closed and self.connected:
            await self.drop("sandbox_flap")

    async def _show_qr_loop(self) -> None:
        started = self.world.clock.now_ms()
        self.showing_qr = True
        if self.world.auto_link_ms is not None:
            self._spawn(self._auto_link)
        while not self._closed and not self.phone.linked:
            self.phone.qr_seq += 1
            code = f"2@sandbox-{self.instance_id}-{self.phone.qr_seq},{self.world.new_message_id()}"
            await self.emit(QrCode(code))
            remaining = started + self.world.qr_window_ms - self.world.clock.now_ms()
            if remaining <= 0:
                break
            await self.world.clock.sleep(min(self.world.qr_refresh_ms, remaining))
            if self.world.clock.now_ms() - started >= self.world.qr_window_ms:
                break
        if not self._closed and not self.phone.linked:
            self.showing_qr = False
            await self.emit(QrTimeout())

    async def _auto_link(self) -> None:
        assert self.world.auto_link_ms is not None
        await self.world.clock.sleep(self.world.auto_link_ms)
        if not self._closed and not self.phone.linked and self.showing_qr:
            await self.world.scan(self.instance_id)

    async def on_linked(self) -> None:
        """Called by the world when the QR was scanned."""
        self.showing_qr = False
        await self.emit(Authenticated())
        self._spawn(self._come_online)

    async def drop(self, reason: str) -> None:
        """Lose the connection (fault or flap)."""
        self.connected = False
        await self.emit(Disconnected(reason))

    async def logged_out(self, reason: str) -> None:
        """End the session from the phone's side."""
        self.connected = False
        await self.emit(LoggedOut(reason))

    async def reconnect(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.connected = False
        await self.start()

    async def stop(self) -> None:
        self._closed = True
        self.connected = False
        self.showing_qr = False
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.phone.engine is self:
            self.phone.engine = None

    async def logout(self) -> None:
        await self.discard_session()

    async def discard_session(self) -> None:
        """Forget the linked session (the next start shows a QR) and stop."""
        self.phone.linked = False
        self.phone.stale_session = False
        self.world._save_sessions()
        await self.stop()

    def new_message_id(self) -> str:
        """A WhatsApp-like id the sandbox delivers under when passed as ``message_id``."""
        return self.world.new_message_id()

    async def _before_send(self, chat_id: str) -> None:
        if not self.connected:
            raise DisconnectedError("sandbox engine is not connected", reason="not_connected")
        latency = self.phone.send_latency_ms or self.world.send_latency_ms
        if latency:
            await self.world.clock.sleep(latency)
            if not self.connected:
                raise DisconnectedError("connection lost during send", reason="disconnected")
        if self.phone.send_errors and self.phone.send_errors[0] not in _ANSWER_LOST:
            mode = self.phone.send_errors.pop(0)
            if mode == "transient":
                raise TransientSendError("sandbox: scripted transient send error", reason="server_error")
            if mode == "permanent":
                raise PermanentSendError("sandbox: scripted permanent send error", reason="invalid_recipient")
            self.connected = False
            await self.emit(Disconnected("sandbox_disconnect_during_send"))
            raise DisconnectedError("sandbox: connection dropped during send", reason="disconnected")
        if chat_id in self.phone.unregistered:
            raise PermanentSendError(f"{chat_id} is not on WhatsApp", reason="not_on_whatsapp")

    async def _after_send(self, message_id: str, chat_id: str) -> None:
        if self.world.auto_ack:
            self._spawn(lambda: self._ack_later(message_id, chat_id))

    async def _ack_later(self, message_id: str, chat_id: str, delay_ms: int = 50) -> None:
        await self.world.clock.sleep(delay_ms)
        if not self._closed:
            await self.emit(Receipt((message_id,), "delivered", chat_id=chat_id,
                                    timestamp=self.world.clock.now_ms()))

    def _answer_lost(self, message_id: str, chat_id: str) -> None:
        if self.phone.send_errors and self.phone.send_errors[0] in _ANSWER_LOST:
            mode = self.phone.send_errors.pop(0)
            if mode == "answer_lost":  # the evidence WhatsApp would give: a receipt for that very id
                delay = self.phone.evidence_delay_ms
                self._spawn(lambda: self._ack_later(message_id, chat_id, delay))
            raise TransientSendError("sandbox: the server's answer was lost after delivery", reason="timeout",
                                     maybe_sent=True)

    async def send_text(self, chat_id: str, text: str, *, message_id: str | None = None) -> SendResult:
        now = self.world.clock.now_ms()  # the send reached "WhatsApp" now; the answer takes the latency
        await self._before_send(chat_id)
        mid = message_id or self.world.new_message_id()
        self.world.record_delivery(self.phone, Delivery(mid, chat_id, "text", now, text=text))
        self._answer_lost(mid, chat_id)
        await self._after_send(mid, chat_id)
        return SendResult(message_id=mid, timestamp=now)

    async def send_poll(self, chat_id: str, caption: str, options: list[str], multiple: bool, *,
                        message_id: str | None = None, template: Mapping[str, Any] | None = None) -> SendResult:
        now = self.world.clock.now_ms()  # the send reached "WhatsApp" now; the answer takes the latency
        await self._before_send(chat_id)
        mid = message_id or self.world.new_message_id()
        self.world.record_delivery(self.phone, Delivery(mid, chat_id, "poll", now, caption=caption,
                                                        options=list(options), multiple=multiple))
        self._answer_lost(mid, chat_id)
        await self._after_send(mid, chat_id)
        return SendResult(message_id=mid, timestamp=now)

    async def _deliver(self, chat_id: str, kind: str, message_id: str | None, text: str | None = None,
                       caption: str | None = None, **extra: Any) -> SendResult:
        """Record one send of any kind at the instant it reached "WhatsApp" (the delivery's ``at``)."""
        now = self.world.clock.now_ms()
        await self._before_send(chat_id)
        mid = message_id or self.world.new_message_id()
        self.world.record_delivery(self.phone, Delivery(mid, chat_id, kind, now, text=text, caption=caption,
                                                        extra=extra))
        self._answer_lost(mid, chat_id)
        await self._after_send(mid, chat_id)
        return SendResult(message_id=mid, timestamp=now)

    async def send_media(self, chat_id: str, media: Media, *, message_id: str | None = None) -> SendResult:
        return await self._deliver(chat_id, "media", message_id, caption=media.caption, mediaType=media.media_type,
                                   mimetype=media.mimetype, filename=media.filename, size=len(media.data),
                                   sha256=hashlib.sha256(media.data).hexdigest(), forwarded=media.forwarded)

    async def send_location(self, chat_id: str, location: Location, *, message_id: str | None = None
                            ) -> SendResult:
        return await self._deliver(chat_id, "location", message_id, latitude=location.latitude,
                                   longitude=location.longitude, name=location.name, address=location.address,
                                   url=location.url, forwarded=location.forwarded)

    async def send_vcard(self, chat_id: str, vcard: str, display_name: str, *, message_id: str | None = None
                         ) -> SendResult:
        return await self._deliver(chat_id, "vcard", message_id, vcard=vcard, displayName=display_name)

    async def send_reaction(self, chat_id: str, target: MessageRef, emoji: str, *,
                            message_id: str | None = None) -> SendResult:
        return await self._deliver(chat_id, "reaction", message_id, targetMessageId=target.message_id,
                                   reaction=emoji)

    async def send_edit(self, chat_id: str, target: MessageRef, text: str, *,
                        message_id: str | None = None) -> SendResult:
        self._own(target, "edit")
        return await self._deliver(chat_id, "edit", message_id, text=text, targetMessageId=target.message_id)

    async def send_revoke(self, chat_id: str, target: MessageRef, *, message_id: str | None = None) -> SendResult:
        if not target.from_me and not chat_id.endswith("@g.us"):
            raise PermanentSendError("only your own messages can be deleted for everyone in a direct chat",
                                     reason="not_allowed")
        return await self._deliver(chat_id, "revoke", message_id, targetMessageId=target.message_id)

    async def send_forward(self, chat_id: str, kind: str, content: Mapping[str, Any], *,
                           message_id: str | None = None) -> SendResult:
        fields = {k: v for k, v in content.items() if k != "data"}
        return await self._deliver(chat_id, kind, message_id, text=content.get("message"),
                                   caption=content.get("caption"), forwarded=True, **fields)

    def _own(self, target: MessageRef, action: str) -> None:
        """Like WhatsApp: only a message this account sent can be edited."""
        if not target.from_me:
            raise PermanentSendError(f"cannot {action} {target.message_id}: not a message this account sent",
                                     reason="not_allowed")

    async def send_seen(self, chat_id: str, message_ids: Sequence[str] = ()) -> None:
        if not self.connected:
            raise EngineError("sandbox engine is not connected")
        self.phone.seen.append((chat_id, self.world.clock.now_ms()))

    async def send_presence(self, chat_id: str | None, state: str) -> None:
        if not self.connected:
            raise EngineError("sandbox engine is not connected")
        self.phone.presence.append((chat_id, state, self.world.clock.now_ms()))

    async def download_media(self, chat_id: str, message_id: str, max_bytes: int) -> DownloadedMedia:
        if not self.connected:
            raise EngineError("sandbox engine is not connected")
        found = self.phone.media.get(message_id)
        if found is None:
            raise MediaNotFound(f"no media is known for message {message_id}")
        data, mime, name = found
        if len(data) > max_bytes:
            raise MediaTooLarge(f"the media of {message_id} has {len(data)} bytes, more than {max_bytes}")
        return DownloadedMedia(data, mime, name)

    async def send_typing(self, chat_id: str) -> None:
        return None

    async def request_pairing_code(self, phone: str) -> str:
        if self.phone.linked:
            raise EngineStateConflict("instance is already linked", reason="already_linked")
        if not self.showing_qr:
            raise EngineStateConflict("the connection is not waiting for a login (no QR code is shown); "
                                      "restart the instance and ask again", reason="not_waiting_for_login")
        code = "".join(self.world.rng.choice("ABCDEFGHJKLMNPQRSTVWXYZ23456789") for _ in range(8))
        await self.emit(PairCode(code))
        return f"{code[:4]}-{code[4:]}"

    async def probe_ready(self) -> bool:
        return self.connected

    async def is_registered(self, chat_id: str) -> bool:
        if not self.connected:
            raise EngineError("instance is not connected")
        return chat_id not in self.phone.unregistered


class SandboxFactory(EngineFactory):
    """Builds :class:`SandboxEngine` instances sharing one :class:`SandboxWorld`."""

    name = "sandbox"

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world

    def create(self, instance_id: str, sink: EventSink) -> Engine:
        return SandboxEngine(self.world, instance_id, sink)

    async def remove_session(self, instance_id: str) -> None:
        """Stop the instance's engine if any and forget its phone and persisted session."""
        engine = self.world.phones[instance_id].engine if instance_id in self.world.phones else None
        if engine is not None:
            await engine.stop()
        self.world.forget(instance_id)
