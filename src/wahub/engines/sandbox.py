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
``never_ready`` (authenticate but never become ready), ``unregistered`` (a chat id that is not on WhatsApp).

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
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wahub.domain.clock import Clock
from wahub.domain.errors import (
    DisconnectedError,
    EngineError,
    InvalidInput,
    PermanentSendError,
    TransientSendError,
)
from wahub.engines.base import (
    Authenticated,
    Capabilities,
    Disconnected,
    Engine,
    EngineEvent,
    EngineFactory,
    EngineStateConflict,
    EventSink,
    InboundMessage,
    LoggedOut,
    MessageEdit,
    MessageRevoke,
    PairCode,
    PollVote,
    QrCode,
    QrTimeout,
    Reaction,
    Ready,
    Receipt,
    SendResult,
    TemporaryBan,
)

ACK_ORDER = ("delivered", "read", "played")
SEND_ERROR_MODES = ("transient", "permanent", "disconnect", "answer_lost", "answer_lost_silent")
_ANSWER_LOST = ("answer_lost", "answer_lost_silent")


@dataclass
class Delivery:
    """One send that reached the simulated WhatsApp."""

    message_id: str
    chat_id: str
    kind: str
    at_ms: int
    text: str | None = None
    caption: str | None = None
    options: list[str] | None = None
    multiple: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON shape used by the sandbox API and the delivery log."""
        return {"messageId": self.message_id, "chatId": self.chat_id, "kind": self.kind,
                "at": self.at_ms, "text": self.text, "caption": self.caption,
                "options": self.options, "multipleAnswers": self.multiple}


@dataclass
class Phone:
    """The simulated device behind one instance."""

    instance_id: str
    linked: bool = False
    phone: str = ""
    push_name: str = "Sandbox"
    connected: bool = False
    qr_seq: int = 0
    send_latency_ms: int = 0
    send_errors: list[str] = field(default_factory=list)
    evidence_delay_ms: int = 1_000
    drop_after_ready_ms: int | None = None
    drop_count: int = 0
    never_ready: bool = False
    unregistered: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)
    engine: SandboxEngine | None = None


class SandboxWorld:
    """All simulated phones of one hub, plus the knobs tests and the demo turn."""

    def __init__(self, clock: Clock, data_dir: Path | None, *, auto_link_ms: int | None = None,
                 send_latency_ms: int = 0, auto_ack: bool = True, qr_refresh_ms: int = 20_000,
                 qr_window_ms: int = 160_000, delivery_log: Path | None = None,
                 rng: random.Random | None = None) -> None:
        self.clock = clock
        self.auto_link_ms = auto_link_ms
        self.send_latency_ms = send_latency_ms
        self.auto_ack = auto_ack
        self.qr_refresh_ms = qr_refresh_ms
        self.qr_window_ms = qr_window_ms
        self.rng = rng or random.Random()
        self.phones: dict[str, Phone] = {}
        self._sessions_file = data_dir / "sandbox" / "sessions.json" if data_dir else None
        self._delivery_log = delivery_log
        self._load_sessions()

    # -- persistence of linked sessions ------------------------------------------------------
    def _load_sessions(self) -> None:
        if self._sessions_file and self._sessions_file.exists():
            data = json.loads(self._sessions_file.read_text() or "{}")
            for instance_id, info in data.items():
                self.phones[instance_id] = Phone(instance_id, linked=True, phone=info["phone"],
                                                 push_name=info.get("pushName", "Sandbox"))

    def _save_sessions(self) -> None:
        if not self._sessions_file:
            return
        self._sessions_file.parent.mkdir(parents=True, exist_ok=True)
        data = {p.instance_id: {"phone": p.phone, "pushName": p.push_name}
                for p in self.phones.values() if p.linked}
        tmp = self._sessions_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._sessions_file)

    def phone(self, instance_id: str) -> Phone:
        """The phone of ``instance_id`` (created on first use)."""
        if instance_id not in self.phones:
            self.phones[instance_id] = Phone(instance_id)
        return self.phones[instance_id]

    def forget(self, instance_id: str) -> None:
        """Drop the phone and its persisted session (instance deleted)."""
        self.phones.pop(instance_id, None)
        self._save_sessions()

    def new_message_id(self) -> str:
        """A WhatsApp-like message id (``3EB0`` + 16 hex digits)."""
        return "3EB0" + "".join(self.rng.choice("0123456789ABCDEF") for _ in range(16))

    def record_delivery(self, phone: Phone, delivery: Delivery) -> None:
        """Keep a delivery in memory and, when configured, durably in the delivery log."""
        phone.deliveries.append(delivery)
        if self._delivery_log is not None:
            line = json.dumps({"instanceId": phone.instance_id, **delivery.as_dict()}, ensure_ascii=False)
            with open(self._delivery_log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    # -- what the sandbox API calls ----------------------------------------------------------
    async def scan(self, instance_id: str, phone: str | None = None, push_name: str | None = None) -> None:
        """Simulate scanning the current QR with a phone: links the session, then ready."""
        p = self.phone(instance_id)
        engine = self._engine(p)
        if not engine.showing_qr:
            raise InvalidInput("no QR code is being shown for this instance; nothing to scan")
        p.linked = True
        p.phone = phone or p.phone or self._fake_number(instance_id)
        if push_name:
            p.push_name = push_name
        self._save_sessions()
        await engine.on_linked()

    async def inject_message(self, instance_id: str, sender: str, text: str, *,
                             message_id: str | None = None, sender_alt: str | None = None,
                             chat_id: str | None = None, **content: Any) -> str:
        """Deliver an inbound message to the instance; returns its message id.

        ``content`` takes the other :class:`~wahub.engines.base.InboundMessage` fields: ``kind``
        (``image``, ``ptt``, ``location``…), ``caption``, ``mimetype``, ``filename``, ``latitude``…,
        ``vcards``, ``quoted_message_id``, ``quoted_body``; media kinds get ``has_media`` by default.
        """
        engine = self._engine(self.phone(instance_id))
        mid = message_id or self.new_message_id()
        if content.get("kind", "chat") in ("image", "video", "audio", "ptt", "document", "sticker"):
            content.setdefault("has_media", True)
        if "vcards" in content:
            content["vcards"] = tuple(content["vcards"])
        await engine.emit(InboundMessage(message_id=mid, chat_id=chat_id or sender, sender=sender, text=text,
                                         timestamp=self.clock.now_ms(), sender_alt=sender_alt, **content))
        return mid

    async def inject_reaction(self, instance_id: str, sender: str, target_message_id: str, emoji: str, *,
                              chat_id: str | None = None) -> str:
        """Deliver a reaction (``emoji`` "" removes it) on ``target_message_id``; returns the reaction's id."""
        mid = self.new_message_id()
        await self._engine(self.phone(instance_id)).emit(Reaction(
            mid, target_message_id, chat_id or sender, sender, emoji, self.clock.now_ms()))
        return mid

    async def inject_edit(self, instance_id: str, sender: str, original_message_id: str, text: str, *,
                          chat_id: str | None = None) -> None:
        """Deliver an edit: ``original_message_id`` now reads ``text``."""
        await self._engine(self.phone(instance_id)).emit(MessageEdit(
            original_message_id, chat_id or sender, sender, text, self.clock.now_ms()))

    async def inject_revoke(self, instance_id: str, sender: str, original_message_id: str, *,
                            chat_id: str | None = None) -> None:
        """Deliver a delete-for-everyone of ``original_message_id``."""
        await self._engine(self.phone(instance_id)).emit(MessageRevoke(
            original_message_id, chat_id or sender, sender, self.clock.now_ms()))

    async def inject_vote(self, instance_id: str, poll_message_id: str, voter: str, selected: list[str], *,
                          timestamp: int | None = None, voter_alt: str | None = None,
                          as_hashes: bool = False, decrypt_failed: bool = False) -> None:
        """Deliver a poll vote; with ``as_hashes`` the options travel as SHA-256 hashes like whatsmeow's.

        ``decrypt_failed`` delivers a vote whose choice could not be read (``selected`` is ignored).
        """
        p = self.phone(instance_id)
        engine = self._engine(p)
        poll = next((d for d in p.deliveries if d.message_id == poll_message_id), None)
        chat = poll.chat_id if poll else voter
        ts = timestamp if timestamp is not None else self.clock.now_ms()
        if decrypt_failed:
            vote = PollVote(poll_message_id, chat, voter, ts, voter_alt=voter_alt, decrypt_failed=True)
        elif as_hashes:
            hashes = tuple(hashlib.sha256(o.encode()).hexdigest() for o in selected)
            vote = PollVote(poll_message_id, chat, voter, ts, selected_hashes=hashes, voter_alt=voter_alt)
        else:
            vote = PollVote(poll_message_id, chat, voter, ts, selected_options=tuple(selected), voter_alt=voter_alt)
        await engine.emit(vote)

    async def inject_ack(self, instance_id: str, message_ids: list[str], ack: str) -> None:
        """Deliver a receipt (``delivered`` | ``read`` | ``played``) for sent message ids."""
        if ack not in ACK_ORDER:
            raise InvalidInput(f"ack must be one of {', '.join(ACK_ORDER)}")
        engine = self._engine(self.phone(instance_id))
        await engine.emit(Receipt(tuple(message_ids), ack, timestamp=self.clock.now_ms()))

    async def fault(self, instance_id: str, kind: str, params: dict[str, Any]) -> None:
        """Script a fault; see the module docstring for ``kind`` values and their ``params``."""
        p = self.phone(instance_id)
        if kind == "disconnect":
            await self._engine(p).drop("sandbox_disconnect")
        elif kind == "auth_failure":
            p.linked = False
            self._save_sessions()
            await self._engine(p).logged_out("sandbox_auth_failure")
        elif kind == "temporary_ban":
            expires = self.clock.now_ms() + _int(params, "expires_in_ms", 3_600_000, 0, 30 * 86_400_000)
            engine = self._engine(p)
            engine.connected = False
            await engine.emit(TemporaryBan(code=str(params.get("code", "101")), expires_at=expires))
        elif kind == "send_error":
            mode = str(params.get("mode", "transient"))
            if mode not in SEND_ERROR_MODES:
                raise InvalidInput(f"mode must be one of {', '.join(SEND_ERROR_MODES)}")
            p.send_errors.extend([mode] * _int(params, "count", 1, 1, 1000))
            if "evidence_delay_ms" in params:
                p.evidence_delay_ms = _int(params, "evidence_delay_ms", 1_000, 0, 3_600_000)
        elif kind == "slow_send":
            p.send_latency_ms = _int(params, "latency_ms", 5_000, 0, 600_000)
        elif kind == "drop_after_ready":
            p.drop_after_ready_ms = _int(params, "after_ms", 2_000, 0, 86_400_000)
            p.drop_count = _int(params, "count", 10, 0, 1000)
        elif kind == "never_ready":
            p.never_ready = bool(params.get("enabled", True))
        elif kind == "unregistered":
            from wahub.domain import chatid

            p.unregistered.add(chatid.normalize(params.get("chatId"), field="chatId"))
        elif kind == "clear":
            p.send_errors.clear()
            p.send_latency_ms = 0
            p.drop_after_ready_ms = None
            p.never_ready = False
        else:
            raise InvalidInput(f"unknown fault kind {kind!r}")

    def _engine(self, p: Phone) -> SandboxEngine:
        if p.engine is None:
            raise InvalidInput(f"instance {p.instance_id} has no running sandbox engine")
        return p.engine

    def _fake_number(self, instance_id: str) -> str:
        digest = int(hashlib.sha256(instance_id.encode()).hexdigest(), 16)
        return "2010" + str(digest % 10**8).zfill(8)


def _int(params: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """An integer fault parameter in ``[low, high]``; InvalidInput naming it otherwise."""
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{key} must be an integer from {low} to {high}")
    return value


class SandboxEngine(Engine):
    """One simulated connection; all timing goes through the world's clock."""

    capabilities = Capabilities(polls=True, typing=True, pairing_code=True, number_check=True,
                                chosen_message_ids=True)

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
        """Hand an event to the runtime."""
        await self.sink(event)

    def _spawn(self, coro_fn: Callable[[], Any]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro_fn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self._closed = False
        if self.phone.linked:
            self._spawn(self._come_online)
        else:
            self._spawn(self._show_qr_loop)

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
                        message_id: str | None = None) -> SendResult:
        now = self.world.clock.now_ms()  # the send reached "WhatsApp" now; the answer takes the latency
        await self._before_send(chat_id)
        mid = message_id or self.world.new_message_id()
        self.world.record_delivery(self.phone, Delivery(mid, chat_id, "poll", now, caption=caption,
                                                        options=list(options), multiple=multiple))
        self._answer_lost(mid, chat_id)
        await self._after_send(mid, chat_id)
        return SendResult(message_id=mid, timestamp=now)

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
