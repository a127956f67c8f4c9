"""An offline stand-in for neonize's ``NewClient``, for worker tests and benchmarks.

:class:`FakeClient` answers the calls the worker makes on a real client (same names, same
arguments, same neonize protobuf types and exception classes) without any network: a linked
session is a JSON file next to the session database, sends get ids from a counter, and events
(real neonize protobuf objects, serialised and parsed again like Go's) reach the worker's
handlers when the hub sends the ``fake`` protocol command (:meth:`FakeClient.fake_control`).

Select it with ``--fake-client wahub.engines.whatsmeow.fakeclient:FakeClient`` (or the
``WAHUB_WHATSMEOW_FAKE_CLIENT`` environment variable). It imports neonize (its protobufs and
exceptions) but never opens a socket. Differences from the real client: ``connect`` shows one
QR code and returns promptly after ``stop`` in every phase.
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
from neonize.exc import IsOnWhatsAppError, LogoutError, PairPhoneError, SendMessageError, SendPresenceError
from neonize.proto.Neonize_pb2 import (
    JID,
    AddressingMode,
    ConnectFailureReason,
    Device,
    IsOnWhatsAppResponse,
    MessageInfo,
    MessageSource,
    SendResponse,
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


class FakeClient:
    """Offline ``NewClient`` look-alike; see the module docstring."""

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
        self._send_errors: list[str] = []
        self._unregistered: set[str] = set()
        self._presence: list[str] = []
        self._lock = threading.Lock()

    # -- the neonize calls the worker makes -----------------------------------------------------
    def connect(self) -> None:
        """Block like neonize: ready at once when a fake session exists, else show one QR code."""
        self._stopped.clear()
        session = self._session()
        if session is not None:
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
        if not self.connected:
            raise SendMessageError("websocket not connected")
        with self._lock:
            error = self._send_errors.pop(0) if self._send_errors else None
        if error:
            raise SendMessageError(error)
        mid = self.generate_message_id()
        record = {"id": mid, "to": f"{to.User}@{to.Server}", "message": json.loads(_to_json(message))}
        with open(self._dir / SENT_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return SendResponse(ID=mid, Timestamp=int(time.time()), ServerID=0)

    def build_poll_vote_creation(self, name: str, options: list[str], selectable_count: Any,
                                 quoted: Any = None) -> Any:
        return Message(messageContextInfo=MessageContextInfo(messageSecret=os.urandom(32)),
                       pollCreationMessage=PollCreationMessage(
                           name=name, selectableOptionsCount=int(selectable_count.value),
                           options=[PollCreationMessage.Option(optionName=o) for o in options]))

    def decrypt_poll_vote(self, message: Any) -> Any:
        """The fake "encrypts" votes in clear: the payload is the serialised ``PollVoteMessage``."""
        return PollVoteMessage.FromString(message.Message.pollUpdateMessage.vote.encPayload)

    def send_presence(self, presence: Any) -> None:
        self._presence.append(f"presence:{presence}")

    def send_chat_presence(self, to: Any, state: Any, media: Any) -> None:
        if not self.connected:
            raise SendPresenceError("websocket not connected")
        self._presence.append(f"{to.User}@{to.Server}:{state}")

    def is_on_whatsapp(self, *numbers: str) -> list[Any]:
        if not self.connected:
            raise IsOnWhatsAppError("websocket not connected")
        return [IsOnWhatsAppResponse(Query=n, JID=jid(n.lstrip("+") + "@s.whatsapp.net"),
                                     IsIn=n.lstrip("+") not in self._unregistered) for n in numbers]

    def PairPhone(self, phone: str, show_push_notification: bool, client_name: Any = None,  # noqa: N802
                  client_type: Any = None) -> str:
        if self._session() is not None:
            raise PairPhoneError("already logged in")
        digest = hashlib.sha256(phone.encode()).hexdigest().upper()
        return f"{digest[:4]}-{digest[4:8]}"

    # -- test control -----------------------------------------------------------------------------
    def fake_control(self, args: dict[str, Any]) -> dict[str, Any]:
        """Drive the fake: ``action`` is scan | message | vote | receipt | disconnect | logged_out |
        temporary_ban | stream_replaced | send_error | unregistered | sent | presence."""
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
        elif action == "receipt":
            kind = {"delivered": ReceiptEv.DELIVERED, "read": ReceiptEv.READ, "played": ReceiptEv.PLAYED}
            self._dispatch(ReceiptEv(MessageSource=source(str(args["chat"])), MessageIDs=list(args["ids"]),
                                     Timestamp=now_ms // 1000, Type=kind[str(args.get("ack", "delivered"))]))
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
        elif action == "send_error":
            with self._lock:
                self._send_errors.extend([str(args.get("message", "server returned error 500"))]
                                         * int(args.get("count", 1)))
        elif action == "unregistered":
            self._unregistered.add(str(args["number"]))
        elif action == "sent":
            path = self._dir / SENT_FILE
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
            return {"sent": [json.loads(line) for line in lines]}
        elif action == "presence":
            return {"presence": list(self._presence)}
        else:
            raise ValueError(f"unknown fake action {action!r}")
        return {}

    # -- internals --------------------------------------------------------------------------------
    def _session(self) -> dict[str, str] | None:
        path = self._dir / SESSION_FILE
        return json.loads(path.read_text()) if path.exists() else None

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
