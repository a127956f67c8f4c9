"""An offline stand-in for neonize's ``NewClient``, for worker tests and benchmarks.

:class:`FakeClient` answers the calls the worker makes on a real client (same names, same
arguments, same neonize protobuf types and exception classes) without any network: a linked
session is a JSON file next to the session database, sends get ids from a counter, and events
(real neonize protobuf objects, serialised and parsed again like Go's) reach the worker's
handlers when the hub sends the ``fake`` protocol command (:meth:`FakeClient.fake_control`).

Select it with ``--fake-client wahub.engines.whatsmeow.fakeclient:FakeClient`` (or the
``WAHUB_WHATSMEOW_FAKE_CLIENT`` environment variable). It imports neonize (its protobufs and
exceptions) but never opens a socket. Differences from the real client: ``connect`` shows one
QR code and returns promptly after ``stop`` in every phase; ``connect`` fails at once with the
dial error in ``WAHUB_FAKE_CONNECT_ERROR`` when that variable is set (WhatsApp unreachable).

Like neonize 0.5.2 it cannot send under a caller-chosen id: every send gets the fake's own id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neonize.events import (
    EVENT_TO_INT,
    ConnectedEv,
    DisconnectedEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.exc import (
    IsOnWhatsAppError,
    LogoutError,
    NeonizeError,
    PairPhoneError,
    SendMessageError,
    SendPresenceError,
)
from neonize.proto.Neonize_pb2 import (
    JID,
    AddressingMode,
    ConnectFailureReason,
    Device,
    IsOnWhatsAppResponse,
    MessageInfo,
    MessageSource,
    SendMessageReturnFunction,
    SendResponse,
    UploadResponse,
)
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    Message,
    MessageContextInfo,
    PollCreationMessage,
    PollEncValue,
    PollUpdateMessage,
    PollVoteMessage,
)

from wahub.engines.whatsmeow.fakedirectory import DIRECTORY_ACTIONS, FakeDirectory

CONNECT_ERROR_ENV = "WAHUB_FAKE_CONNECT_ERROR"
STALE_SESSION_ENV = "WAHUB_FAKE_STALE_SESSION"  # a stored session that never comes online (no QR, no ready)
SESSION_FILE = "fake-session.json"
SENT_FILE = "fake-sent.jsonl"
EMPTY_JID = JID(User="", Server="", RawAgent=0, Device=0, Integrator=0, IsEmpty=True)


def jid(value: str) -> Any:
    """``"user@server"`` → neonize JID (an empty string gives the empty JID)."""
    if not value:
        return EMPTY_JID
    user, _, server = value.rpartition("@")
    return JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def source(sender: str, chat: str | None = None, sender_alt: str = "", from_me: bool = False) -> Any:
    """A neonize ``MessageSource`` the way Go fills it (absent alternatives are empty JIDs)."""
    s = jid(sender)
    return MessageSource(Chat=jid(chat or sender), Sender=s, IsFromMe=from_me,
                         IsGroup=(chat or "").endswith("g.us"),
                         SenderAlt=jid(sender_alt), RecipientAlt=EMPTY_JID, BroadcastListOwner=EMPTY_JID,
                         AddressingMode=AddressingMode.Value("LID" if s.Server == "lid" else "PN"))


def message_event(message: Any, src: Any, message_id: str, ts_ms: int, push_name: str = "") -> Any:
    """A neonize ``MessageEv`` envelope around a WhatsApp ``Message``."""
    info = MessageInfo(MessageSource=src, ID=message_id, ServerID=0, Type="text", Pushname=push_name,
                       Timestamp=ts_ms, Category="", Multicast=False, MediaType="", Edit="")
    return MessageEv(Info=info, Message=message, IsEphemeral=False, IsViewOnce=False, IsViewOnceV2=False,
                     IsViewOnceV2Extension=False, IsDocumentWithCaption=False, IsLottieSticker=False,
                     IsEdit=False, UnavailableRequestID="", RetryCount=0)


class _Events:
    """neonize's ``client.event``: ``event(EvType)(handler)`` and ``event.qr(handler)``."""

    def __init__(self) -> None:
        self.list_func: dict[int, Callable[[Any, Any], None]] = {}
        self._qr: Callable[[Any, bytes], None] | None = None

    def __call__(self, event: type[Any]) -> Callable[[Callable[[Any, Any], None]], None]:
        def register(func: Callable[[Any, Any], None]) -> None:
            self.list_func[EVENT_TO_INT[event]] = func

        return register

    def qr(self, func: Callable[[Any, bytes], None]) -> None:
        self._qr = func


class FakeClient(FakeDirectory):
    """Offline ``NewClient`` look-alike; see the module docstring (contacts and groups: :mod:`.fakedirectory`)."""

    def __init__(self, name: str, jid: Any = None, props: Any = None, uuid: str | None = None,
                 new_device: bool = False) -> None:
        self.name = name
        self.uuid = (uuid or name).encode()
        self.event = _Events()
        self.me: Any = None
        self.connected = False
        self._dir = Path(name).parent
        self._stopped = threading.Event()
        self._ids = itertools.count(1)
        self._send_errors: list[tuple[str, bool]] = []  # (message, delivered first)
        self._receipts_after_send: list[tuple[str, float]] = []  # (ack, delay s) for the next deliveries
        self._unregistered: set[str] = set()
        self._presence: list[str] = []
        self._media: dict[str, bytes] = {}  # directPath → bytes (uploads, injected media)
        self._lock = threading.Lock()

    # -- the neonize calls the worker makes -----------------------------------------------------
    def connect(self) -> None:
        """Block like neonize: ready at once when a fake session exists, else show one QR code."""
        self._stopped.clear()
        if os.environ.get(CONNECT_ERROR_ENV):
            raise NeonizeError(os.environ[CONNECT_ERROR_ENV])
        session = self._session()
        if session is not None and os.environ.get(STALE_SESSION_ENV):
            pass
        elif session is not None:
            self._online(session)
        elif self.event._qr is not None:
            self.event._qr(self, f"2@fake-{self.uuid.decode()},{os.urandom(8).hex()}".encode())
        self._stopped.wait()
        self.connected = False

    def stop(self) -> None:
        self._stopped.set()

    def disconnect(self) -> None:
        self.connected = False

    @property
    def is_connected(self) -> bool:
        return self.connected

    @property
    def is_logged_in(self) -> bool:
        return self._session() is not None

    def logout(self) -> None:
        if self._session() is None:
            raise LogoutError("the store doesn't contain a device JID")
        (self._dir / SESSION_FILE).unlink(missing_ok=True)
        self.me = None

    def generate_message_id(self) -> str:
        return f"3EB0{os.getpid():06X}{next(self._ids):012X}"

    def send_message(self, to: Any, message: Any, **_: Any) -> Any:
        answer = self.send_message_raw(to, message)
        if answer.Error:
            raise SendMessageError(answer.Error)
        return answer.SendResponse

    def send_message_raw(self, to: Any, message: Any) -> Any:
        """What neonize's Go ``SendMessage`` answers: ``Error`` and ``SendResponse`` (its ID set once written)."""
        if not self.connected:
            return SendMessageReturnFunction(Error="websocket not connected")
        with self._lock:
            error, delivered = self._send_errors.pop(0) if self._send_errors else ("", True)
            receipt = self._receipts_after_send.pop(0) if self._receipts_after_send and delivered else None
        mid = self.generate_message_id()
        if delivered:
            record = {"id": mid, "to": f"{to.User}@{to.Server}", "message": json.loads(_to_json(message))}
            with open(self._dir / SENT_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        if receipt is not None:
            ack, delay_s = receipt
            chat = f"{to.User}@{to.Server}"
            timer = threading.Timer(delay_s, lambda: self._receipt(chat, [mid], ack))
            timer.daemon = True
            timer.start()
        response = SendResponse(ID=mid, Timestamp=int(time.time()), ServerID=0)
        if error and not delivered:  # refused before writing: whatsmeow has not assigned the id yet
            return SendMessageReturnFunction(Error=error)
        answer = SendMessageReturnFunction(SendResponse=response)
        if error:
            answer.Error = error
        return answer

    def build_poll_vote_creation(self, name: str, options: list[str], selectable_count: Any,
                                 quoted: Any = None) -> Any:
        return Message(messageContextInfo=MessageContextInfo(messageSecret=os.urandom(32)),
                       pollCreationMessage=PollCreationMessage(
                           name=name, selectableOptionsCount=int(selectable_count.value),
                           options=[PollCreationMessage.Option(optionName=o) for o in options]))

    def upload(self, binary: bytes, media_type: Any = None) -> Any:
        """Keep the bytes (downloadable again by their ``directPath``) and answer like whatsmeow's upload."""
        digest = hashlib.sha256(binary).digest()
        path = f"/v/t62.fake/{digest.hex()[:32]}"
        with self._lock:
            self._media[path] = binary
        return UploadResponse(url=f"https://mmg.whatsapp.net{path}", DirectPath=path, Handle="",
                              MediaKey=os.urandom(32), FileEncSHA256=hashlib.sha256(b"enc" + binary).digest(),
                              FileSHA256=digest, FileLength=len(binary))

    def download_any(self, message: Any, path: str | None = None) -> bytes:
        """The bytes uploaded (or injected with ``media_b64``) under the message's ``directPath``."""
        from neonize.exc import DownloadError

        for field in ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage"):
            if message.HasField(field):
                data = self._media.get(getattr(message, field).directPath)
                if data is not None:
                    return data
        raise DownloadError("failed to download media: 404")

    def mark_read(self, *message_ids: str, chat: Any, sender: Any, receipt: Any, timestamp: int | None = None) -> None:
        if not self.connected:
            raise NeonizeError("websocket not connected")
        self._presence.append(f"read:{chat.User}@{chat.Server}:{','.join(message_ids)}")

    def decrypt_poll_vote(self, message: Any) -> Any:
        """The fake "encrypts" votes in clear: the payload is the serialised ``PollVoteMessage``."""
        from google.protobuf.message import DecodeError
        from neonize.exc import DecryptPollVoteError

        try:
            return PollVoteMessage.FromString(message.Message.pollUpdateMessage.vote.encPayload)
        except DecodeError as exc:
            raise DecryptPollVoteError("failed to decrypt poll vote: cipher: message authentication failed") from exc

    def send_presence(self, presence: Any) -> None:
        self._presence.append(f"presence:{presence}")

    def send_chat_presence(self, to: Any, state: Any, media: Any) -> None:
        if not self.connected:
            raise SendPresenceError("websocket not connected")
        self._presence.append(f"{to.User}@{to.Server}:{state}")

    def is_on_whatsapp(self, *numbers: str) -> list[Any]:
        if not self.connected:
            raise IsOnWhatsAppError("websocket not connected")
        return [IsOnWhatsAppResponse(Query=n, JID=jid(self.known_as(n)),
                                     IsIn=n.lstrip("+") not in self._unregistered) for n in numbers]

    def PairPhone(self, phone: str, show_push_notification: bool, client_name: Any = None,  # noqa: N802
                  client_type: Any = None) -> str:
        if self._session() is not None:
            raise PairPhoneError("already logged in")
        digest = hashlib.sha256(phone.encode()).hexdigest().upper()
        return f"{digest[:4]}-{digest[4:8]}"

    # -- test control -----------------------------------------------------------------------------
    def fake_control(self, args: dict[str, Any]) -> dict[str, Any]:
        """Drive the fake: ``action`` is scan | message | raw_message | vote | undecryptable_vote | receipt |
        receipt_after_send | disconnect | logged_out | temporary_ban | stream_replaced | send_error |
        deliver_then_timeout | unregistered | sent | presence, and the directory knobs of
        :mod:`~wahub.engines.whatsmeow.fakedirectory` (number_alias, contact, profile_picture, join_request, groups).

        ``send_error``: the next ``count`` sends fail with ``message`` (``delivered: true`` = the
        message reached the chat before the error, like a lost answer); ``deliver_then_timeout`` is
        that with whatsmeow's "context deadline exceeded". ``receipt_after_send``: the next
        ``count`` delivered sends get a receipt (``ack``) ``delay_ms`` later. ``raw_message``: any
        ``Message`` given as protobuf JSON (``message``), from ``sender`` (quoted replies,
        media, contacts, locations, reactions, edits, revokes).
        """
        action = args.get("action")
        now_ms = int(time.time() * 1000)
        if action == "scan":
            session = {"phone": str(args.get("phone", "15550001111")),
                       "push_name": str(args.get("push_name", "Fake"))}
            (self._dir / SESSION_FILE).write_text(json.dumps(session))
            self._dispatch(PairStatusEv(ID=jid(session["phone"] + "@s.whatsapp.net"), BusinessName="",
                                        Platform="android", Status=PairStatusEv.SUCCESS))
            self._online(session)
        elif action == "message":
            msg = Message(conversation=str(args["text"]))
            src = source(args["sender"], args.get("chat"), args.get("sender_alt", ""))
            self._dispatch(message_event(msg, src,
                                         str(args.get("id") or self.generate_message_id()), now_ms,
                                         str(args.get("push_name", ""))))
        elif action == "vote":
            chosen = [hashlib.sha256(o.encode()).digest() for o in args.get("options", [])]
            update = PollUpdateMessage(
                pollCreationMessageKey=MessageKey(remoteJID=str(args.get("chat") or args["voter"]),
                                                  fromMe=True, ID=str(args["poll_id"])),
                vote=PollEncValue(encPayload=PollVoteMessage(selectedOptions=chosen).SerializeToString(),
                                  encIV=os.urandom(12)),
                senderTimestampMS=now_ms)
            self._dispatch(message_event(Message(pollUpdateMessage=update),
                                         source(args["voter"], args.get("chat"), args.get("voter_alt", "")),
                                         self.generate_message_id(), now_ms))
        elif action == "raw_message":
            from google.protobuf import json_format

            msg = json_format.ParseDict(args["message"], Message())
            if args.get("media_b64"):  # the file behind the message's directPath, for download_any
                import base64

                inner = next((getattr(msg, f) for f in ("imageMessage", "videoMessage", "audioMessage",
                                                        "documentMessage", "stickerMessage") if msg.HasField(f)), None)
                if inner is not None:
                    self._media[inner.directPath] = base64.b64decode(args["media_b64"])
            src = source(args["sender"], args.get("chat"), args.get("sender_alt", ""), bool(args.get("from_me")))
            mid = str(args.get("id") or self.generate_message_id())
            self._dispatch(message_event(msg, src, mid, now_ms, str(args.get("push_name", ""))))
            return {"id": mid}
        elif action == "undecryptable_vote":  # a vote whose payload is not a vote: decrypting it fails
            update = PollUpdateMessage(
                pollCreationMessageKey=MessageKey(remoteJID=str(args["voter"]), fromMe=True, ID=str(args["poll_id"])),
                vote=PollEncValue(encPayload=b"\xff\xff\xff", encIV=os.urandom(12)), senderTimestampMS=now_ms)
            self._dispatch(message_event(Message(pollUpdateMessage=update), source(args["voter"]),
                                         self.generate_message_id(), now_ms))
        elif action == "receipt":
            self._receipt(str(args["chat"]), list(args["ids"]), str(args.get("ack", "delivered")))
        elif action == "receipt_after_send":
            with self._lock:
                self._receipts_after_send.extend([(str(args.get("ack", "delivered")),
                                                   int(args.get("delay_ms", 200)) / 1000)] * int(args.get("count", 1)))
        elif action == "disconnect":
            self.connected = False
            self._dispatch(DisconnectedEv(status=True))
        elif action == "logged_out":
            (self._dir / SESSION_FILE).unlink(missing_ok=True)
            self.connected = False
            self._dispatch(LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.Value("LOGGED_OUT")))
        elif action == "temporary_ban":
            self.connected = False
            self._dispatch(TemporaryBanEv(Code=TemporaryBanEv.SEND_TO_TOO_MANY_PEOPLE,
                                          Expire=int(args.get("expire_s", 3600))))
        elif action == "stream_replaced":
            self.connected = False
            self._dispatch(StreamReplacedEv())
        elif action in ("send_error", "deliver_then_timeout"):
            timeout = action == "deliver_then_timeout"
            message = "context deadline exceeded" if timeout else str(args.get("message", "server returned error 500"))
            delivered = timeout or bool(args.get("delivered", False))
            with self._lock:
                self._send_errors.extend([(message, delivered)] * int(args.get("count", 1)))
        elif action == "unregistered":
            self._unregistered.add(str(args["number"]))
        elif action == "sent":
            path = self._dir / SENT_FILE
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
            return {"sent": [json.loads(line) for line in lines]}
        elif action == "presence":
            return {"presence": list(self._presence)}
        elif action in DIRECTORY_ACTIONS:
            return self.directory_control(args)
        else:
            raise ValueError(f"unknown fake action {action!r}")
        return {}

    # -- internals --------------------------------------------------------------------------------
    def _session(self) -> dict[str, str] | None:
        path = self._dir / SESSION_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def _receipt(self, chat: str, ids: list[str], ack: str) -> None:
        kind = {"delivered": ReceiptEv.DELIVERED, "read": ReceiptEv.READ, "played": ReceiptEv.PLAYED}
        self._dispatch(ReceiptEv(MessageSource=source(chat), MessageIDs=ids, Timestamp=int(time.time()),
                                 Type=kind[ack]))

    def _online(self, session: dict[str, str]) -> None:
        self.me = Device(JID=jid(session["phone"] + "@s.whatsapp.net"), PushName=session["push_name"])
        self.connected = True
        self._dispatch(ConnectedEv(status=True))

    def _dispatch(self, event: Any) -> None:
        handler = self.event.list_func.get(EVENT_TO_INT[type(event)])
        if handler is not None:
            handler(self, type(event).FromString(event.SerializeToString()))


def _to_json(message: Any) -> str:
    from google.protobuf import json_format

    return str(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None))
