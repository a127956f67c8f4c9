"""The worker's commands for the sends besides text and polls, and for seen, presence and downloads.

Media bytes never travel on the protocol (one line is at most 1 MiB): the engine writes an
outgoing file into ``<session>/transfer/`` and passes its ``path``; the worker reads and deletes
it. A download is written there by the worker and read and deleted by the engine at once.

Targets are named by the id the hub knows; a message this account sent under a hub-chosen id is
addressed on the wire by its whatsmeow id (:meth:`~wahub.engines.whatsmeow.msgids.Aliases.wire`).
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wahub.domain import chatid
from wahub.domain.errors import EngineError, PermanentSendError, WaHubError
from wahub.engines import base
from wahub.engines.whatsmeow import outgoing
from wahub.engines.whatsmeow.workerio import resolve, to_jid

if TYPE_CHECKING:
    from wahub.engines.whatsmeow.worker import Worker

SENDS = ("send_media", "send_location", "send_vcard", "send_reaction", "send_edit", "send_revoke", "send_forward")
COMMANDS = (*SENDS, "seen", "presence", "download_media")
TRANSFER_DIR = "transfer"
MAX_REMEMBERED_MEDIA = 2_000  # received media messages whose download keys the worker keeps (newest)
MAX_UNREAD_PER_CHAT = 50  # the newest received messages of a chat send-seen marks read
MAX_UNREAD_CHATS = 2_000

log = logging.getLogger("wahub.whatsmeow.worker")


class MediaMemory:
    """The ``Message`` protobufs of the newest received media messages (their keys, never their bytes)."""

    def __init__(self, limit: int = MAX_REMEMBERED_MEDIA) -> None:
        self.limit = limit
        self._messages: OrderedDict[str, Any] = OrderedDict()

    def keep(self, message_id: str, message: Any) -> None:
        """Remember ``message`` under ``message_id`` (the oldest is forgotten beyond the limit)."""
        self._messages[message_id] = message
        self._messages.move_to_end(message_id)
        while len(self._messages) > self.limit:
            self._messages.popitem(last=False)

    def get(self, message_id: str) -> Any | None:
        """The remembered message, or None."""
        return self._messages.get(message_id)


class Unread:
    """Per chat, the received messages not yet marked read (id, sender): what ``seen`` without ids marks."""

    def __init__(self, per_chat: int = MAX_UNREAD_PER_CHAT, chats: int = MAX_UNREAD_CHATS) -> None:
        self.per_chat = per_chat
        self.chats = chats
        self._by_chat: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()

    def add(self, message: base.InboundMessage) -> None:
        """Remember a received message (own echoes are never unread)."""
        if message.from_me:
            return
        pending = self._by_chat.setdefault(message.chat_id, [])
        pending.append((message.message_id, message.sender))
        del pending[:-self.per_chat]
        self._by_chat.move_to_end(message.chat_id)
        while len(self._by_chat) > self.chats:
            self._by_chat.popitem(last=False)

    def take(self, chat_id: str) -> list[tuple[str, str]]:
        """The chat's unread messages, forgotten from now on."""
        return self._by_chat.pop(chat_id, [])


def transfer_path(session_dir: Path) -> Path:
    """A fresh file name in the session's transfer directory (created when missing)."""
    folder = session_dir / TRANSFER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{uuid.uuid4().hex}.bin"


def take_file(path: object, session_dir: Path | None) -> bytes:
    """Read and delete an outgoing file the engine wrote (only inside the transfer directory)."""
    if not isinstance(path, str) or session_dir is None:
        raise EngineError("a media send needs the file's path")
    file = Path(path).resolve()
    if file.parent != (session_dir / TRANSFER_DIR).resolve():
        raise EngineError("media files are taken only from the session's transfer directory")
    try:
        return file.read_bytes()
    finally:
        file.unlink(missing_ok=True)


def _target(worker: Worker, args: dict[str, Any]) -> Any:
    from_me = bool(args.get("from_me"))
    wire_id = worker.aliases.wire(str(args["target_id"])) if from_me else str(args["target_id"])
    participant = args.get("participant")
    return outgoing.key(chatid.to_whatsmeow(str(args["chat_id"])), wire_id, from_me,
                        chatid.to_whatsmeow(participant) if isinstance(participant, str) and participant else None)


def run(worker: Worker, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """Execute one of :data:`COMMANDS`; raises wa-hub errors (sends: the ``SendError`` family)."""
    from wahub.engines.whatsmeow import adapter

    if cmd in SENDS:
        try:
            return _send(worker, cmd, args)
        except WaHubError:
            raise
        except Exception as exc:
            raise adapter.send_error(exc) from exc
    worker.require_linked()
    chat = str(args.get("chat_id") or "")
    if cmd == "seen":
        from neonize.utils.enum import ReceiptType

        given = [(str(i), chat) for i in args.get("message_ids") or []]
        pending = given or worker.unread.take(chat)
        by_sender: dict[str, list[str]] = {}
        for message_id, sender in pending:
            by_sender.setdefault(sender, []).append(message_id)
        for sender, ids in by_sender.items():  # in a group, one receipt per author
            resolve(worker.client.mark_read(*ids, chat=to_jid(chat), sender=to_jid(sender),
                                            receipt=ReceiptType.READ))
        return {"marked": len(pending)}
    if cmd == "presence":
        _presence(worker, chat or None, str(args["state"]))
        return {}
    return _download(worker, str(args["message_id"]), int(args["max_bytes"]))


def _send(worker: Worker, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    worker.require_linked()
    chat = str(args["chat_id"])
    if cmd in ("send_media", "send_location", "send_vcard", "send_forward") and chat.endswith("@c.us") \
            and not worker.registered_user(chat):
        raise PermanentSendError(f"{chat} is not on WhatsApp", reason="not_on_whatsapp")
    if cmd == "send_media":
        data = take_file(args.get("path"), worker.session_dir)
        message = outgoing.media(worker.client, str(args["media_type"]), str(args["mimetype"]), data,
                                 args.get("caption"), args.get("filename"))
    elif cmd == "send_location":
        message = outgoing.location(float(args["latitude"]), float(args["longitude"]), args.get("name"),
                                    args.get("address"), args.get("url"), bool(args.get("forwarded")))
    elif cmd == "send_vcard":
        message = outgoing.contact(str(args["vcard"]), str(args["display_name"]))
    elif cmd == "send_reaction":
        message = outgoing.reaction(_target(worker, args), str(args["emoji"]))
    elif cmd == "send_edit":
        message = outgoing.edit(_target(worker, args), str(args["text"]))
    elif cmd == "send_revoke":
        message = outgoing.revoke(_target(worker, args))
    else:
        copied = take_file(args["path"], worker.session_dir) if args.get("path") else None
        try:
            message = outgoing.forward(worker.client, str(args["kind"]), dict(args["content"]), copied)
        except ValueError as exc:
            raise PermanentSendError(str(exc), reason="unsupported") from exc
    return worker.deliver(chat, message, str(args.get("message_id") or ""))


def typing(worker: Worker, chat: str) -> None:
    """"typing…" before a text (``TYPING_INDICATOR_ENABLED``): the account is marked available once first."""
    if not worker.presence_sent:
        _presence(worker, None, "available")
        worker.presence_sent = True
    _presence(worker, chat, "typing")


def _presence(worker: Worker, chat: str | None, state: str) -> None:
    from neonize.utils.enum import ChatPresence, ChatPresenceMedia, Presence

    if state in ("available", "unavailable"):
        resolve(worker.client.send_presence(Presence.AVAILABLE if state == "available" else Presence.UNAVAILABLE))
        return
    if chat is None:
        raise EngineError(f"presence {state} needs a chat")
    composing = state in ("typing", "recording")
    media = ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO if state == "recording" else \
        ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
    resolve(worker.client.send_chat_presence(
        to_jid(chat), ChatPresence.CHAT_PRESENCE_COMPOSING if composing else ChatPresence.CHAT_PRESENCE_PAUSED, media))


def _download(worker: Worker, message_id: str, max_bytes: int) -> dict[str, Any]:
    from wahub.engines.whatsmeow import content

    message = worker.received_media.get(message_id)
    if message is None or worker.session_dir is None:
        return {"missing": f"no media is known for message {message_id} (the worker keeps the newest "
                           f"{MAX_REMEMBERED_MEDIA} received since it started)"}
    described = content.describe(message) or {}
    inner = content.unwrap(message)
    for field, _kind in content.MEDIA_FIELDS:
        if inner.HasField(field):
            length = int(getattr(inner, field).fileLength or 0)
            if length > max_bytes:
                return {"too_large": f"the media of {message_id} has {length} bytes, more than {max_bytes}"}
    data = bytes(worker.client.download_any(message))
    if len(data) > max_bytes:
        return {"too_large": f"the media of {message_id} has {len(data)} bytes, more than {max_bytes}"}
    path = transfer_path(worker.session_dir)
    path.write_bytes(data)
    return {"path": str(path), "mimetype": described.get("mimetype") or "application/octet-stream",
            "filename": described.get("filename")}


