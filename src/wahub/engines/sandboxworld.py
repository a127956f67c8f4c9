"""The simulated WhatsApp behind the ``sandbox`` engine: phones, their faults, what they received.

See :mod:`wahub.engines.sandbox` for the behaviour (faults, evidence, injection); this module holds
the state (:class:`SandboxWorld`, one :class:`Phone` per instance, :class:`Delivery` records) that
the sandbox API and tests drive, and :mod:`~wahub.engines.sandbox` holds the engine that talks to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wahub.domain.clock import Clock
from wahub.domain.errors import InvalidInput
from wahub.engines.base import (
    InboundMessage,
    MessageEdit,
    MessageRevoke,
    PollVote,
    Reaction,
    Receipt,
    TemporaryBan,
)
from wahub.engines.sandboxdirectory import SandboxDirectories

if TYPE_CHECKING:
    from wahub.engines.sandbox import SandboxEngine

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
    extra: dict[str, Any] = field(default_factory=dict)  # the other kinds' fields (media, location, target…)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape used by the sandbox API and the delivery log (``extra`` merged in)."""
        return {"messageId": self.message_id, "chatId": self.chat_id, "kind": self.kind,
                "at": self.at_ms, "text": self.text, "caption": self.caption,
                "options": self.options, "multipleAnswers": self.multiple, **self.extra}


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
    stale_session: bool = False  # a linked session that no longer logs in: no QR, no ready, no error
    unreachable: str | None = None  # WhatsApp cannot be reached: every start reports ConnectFailed(reason)
    unregistered: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)
    engine: SandboxEngine | None = None
    media: dict[str, tuple[bytes, str, str | None]] = field(default_factory=dict)  # inbound id → bytes, mime, name
    seen: list[tuple[str, int]] = field(default_factory=list)  # (chat id, at ms) of every send-seen
    presence: list[tuple[str | None, str, int]] = field(default_factory=list)  # (chat id, state, at ms)


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
        self.directories = SandboxDirectories(clock)  # chats, contacts, messages, groups (reads and groups)
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
        self.directories.forget(instance_id)
        self._save_sessions()

    def new_message_id(self) -> str:
        """A WhatsApp-like message id (``3EB0`` + 16 hex digits)."""
        return "3EB0" + "".join(self.rng.choice("0123456789ABCDEF") for _ in range(16))

    def record_delivery(self, phone: Phone, delivery: Delivery) -> None:
        """Keep a delivery in memory and, when configured, durably in the delivery log."""
        phone.deliveries.append(delivery)
        self.directories.sent(phone.instance_id, delivery.message_id, delivery.chat_id,
                              "poll_creation" if delivery.kind == "poll" else "chat",
                              delivery.text or delivery.caption or "", delivery.at_ms)
        if self._delivery_log is not None:
            # pid: which process made the engine call (several hub nodes may share one log)
            line = json.dumps({"instanceId": phone.instance_id, "pid": os.getpid(), **delivery.as_dict()},
                              ensure_ascii=False)
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
        ``vcards``, ``quoted_message_id``, ``quoted_body``; media kinds get ``has_media`` by default,
        and their ``media`` (bytes) is what ``download-media`` serves for the message.
        """
        phone = self.phone(instance_id)
        engine = self._engine(phone)
        mid = message_id or self.new_message_id()
        data = content.pop("media", None)
        if content.get("kind", "chat") in ("image", "video", "audio", "ptt", "document", "sticker"):
            content.setdefault("has_media", True)
            if isinstance(data, bytes):  # served by download-media
                phone.media[mid] = (data, str(content.get("mimetype") or "application/octet-stream"),
                                    content.get("filename"))
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
        now = self.clock.now_ms()
        if timestamp is not None and not 0 < timestamp <= now + 86_400_000:
            raise InvalidInput("timestamp must be epoch milliseconds, at most one day ahead of now")
        if poll is not None and poll.options is not None and not decrypt_failed:
            # WhatsApp's own client offers only the poll's options, one of them unless multiple answers are allowed
            unknown = [o for o in selected if o not in poll.options]
            if unknown:
                raise InvalidInput(f"selectedOptions has {unknown!r}, not options of this poll: {poll.options!r}")
            if not poll.multiple and len(selected) > 1:
                raise InvalidInput("selectedOptions may hold one option: this poll allows a single answer")
            if len(set(selected)) != len(selected):
                raise InvalidInput("selectedOptions names an option twice")
        ts = timestamp if timestamp is not None else now
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
        elif kind == "stale_session":
            p.stale_session = bool(params.get("enabled", True))
        elif kind == "unreachable":
            reason = params.get("reason", "dns")
            if reason not in ("dns", "tls", "refused", "timeout", "network", None):
                raise InvalidInput("reason must be one of dns, tls, refused, timeout, network (or null to clear)")
            p.unreachable = reason
        elif kind == "unregistered":
            from wahub.domain import chatid

            p.unregistered.add(chatid.normalize(params.get("chatId"), field="chatId"))
        elif kind == "resolves_to":  # WhatsApp knows the number under another id (e.g. without Brazil's 9th digit)
            from wahub.domain import chatid

            self.directories.alias(instance_id, chatid.normalize(params.get("chatId"), field="chatId"),
                                   chatid.normalize(params.get("to"), field="to"))
        elif kind == "clear":
            p.send_errors.clear()
            p.send_latency_ms = 0
            p.drop_after_ready_ms = None
            p.never_ready = False
            p.stale_session = False
            p.unreachable = None
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


