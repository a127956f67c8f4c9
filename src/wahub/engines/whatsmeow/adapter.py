"""Pure mapping from neonize 0.5.2 protobuf events and errors to wa-hub engine events and errors.

Nothing here calls into neonize or the network; every function takes the protobuf objects
neonize hands its handlers (``neonize.proto.Neonize_pb2``) and returns a
:mod:`wahub.engines.base` event, or None for events wa-hub does not act on. Chat ids come out
in wa-hub's external form (``<digits>@c.us``, ``…@lid``, ``…@g.us``), device suffixes dropped.

Decisions where neonize leaves a choice:

* ``StreamReplaced`` (another client took over this linked device) → ``LoggedOut("stream_replaced")``.
  whatsmeow does not reconnect after it, and reconnecting automatically would make two
  clients of one session knock each other off in a loop — the pattern that gets accounts
  restricted. The session files stay, so an operator's restart resumes without a new QR.
* ``ConnectFailure`` → ``Disconnected("connect_failure_<reason>")`` (whatsmeow already turns the
  logged-out and banned reasons into ``LoggedOut`` / ``TemporaryBan`` events itself);
  ``ClientOutdated`` → ``LoggedOut("client_outdated")`` (reconnecting cannot help).
* ``TemporaryBan.Expire`` is seconds remaining; ``expires_at`` = ``now_ms`` + that, None when 0.
* Receipts of type ``delivered`` / ``read`` / ``played`` become acks; the ``*_self``, ``sender``,
  ``retry`` and other types are not acks of our messages and map to None.
* Message timestamps are epoch ms in neonize 0.5.2; a value below 10^11 is taken as seconds.
* Poll votes carry SHA-256 digests of the chosen option names (hex in ``selected_hashes``);
  the hub resolves them against the options stored when the poll was sent.
"""

from __future__ import annotations

from typing import Any

from wahub.domain import chatid
from wahub.domain.errors import DisconnectedError, PermanentSendError, SendError, TransientSendError
from wahub.engines import base

# neonize.proto.Neonize_pb2.Receipt.ReceiptType values (checked against neonize in the unit tests).
RECEIPT_ACKS = {1: "delivered", 4: "read", 6: "played"}
# neonize.proto.Neonize_pb2.TemporaryBan.TempBanReason values.
TEMP_BAN_REASONS = {1: "send_to_too_many_people", 2: "blocked_by_users", 3: "created_too_many_groups",
                    4: "sent_too_many_same_message", 5: "broadcast_list"}
# neonize.proto.Neonize_pb2.ConnectFailureReason values.
CONNECT_FAILURE_REASONS = {1: "generic", 2: "logged_out", 3: "temp_banned", 4: "main_device_gone",
                           5: "unknown_logout", 6: "client_outdated", 7: "bad_user_agent",
                           8: "internal_server_error", 9: "experimental", 10: "service_unavailable"}
_SECONDS_BEFORE = 10**11  # epoch values below this are seconds (10^11 ms is 1973)


def jid_string(jid: Any) -> str | None:
    """``neonize JID`` → external chat id, or None for an empty JID (Go sends absent alts as empty)."""
    if jid is None or getattr(jid, "IsEmpty", False) or not jid.User or not jid.Server:
        return None
    return chatid.from_whatsmeow(f"{jid.User}@{jid.Server}")


def epoch_ms(value: int) -> int:
    """A neonize timestamp as epoch ms (seconds are scaled up)."""
    return value * 1000 if 0 < value < _SECONDS_BEFORE else value


def kind(event: Any) -> str:
    """The neonize event's protobuf name without package (``Message``, ``Receipt``, ``Connected``…)."""
    return str(event.DESCRIPTOR.full_name).rsplit(".", 1)[-1]


def ready(me: Any) -> base.Ready:
    """``Connected`` → Ready, with the account from neonize's ``Device`` (``client.me``) when known."""
    if me is None or not me.JID.User:
        return base.Ready()
    jid = jid_string(me.JID)
    return base.Ready(phone=chatid.phone_number(jid) if jid else None, push_name=me.PushName or None, jid=jid)


def temporary_ban(event: Any, now_ms: int) -> base.TemporaryBan:
    """``TemporaryBan`` → TemporaryBan with the expiry in epoch ms (``Expire`` is seconds left)."""
    seconds = int(event.Expire)
    code = TEMP_BAN_REASONS.get(int(event.Code), str(int(event.Code)))
    return base.TemporaryBan(code=code, expires_at=now_ms + seconds * 1000 if seconds > 0 else None)


def logged_out(event: Any) -> base.LoggedOut:
    """``LoggedOut`` → LoggedOut with the reason's name (``logged_out``, ``main_device_gone``…)."""
    reason = CONNECT_FAILURE_REASONS.get(int(event.Reason), "logged_out")
    return base.LoggedOut(reason=reason)


def connection_event(event: Any, now_ms: int, me: Any = None) -> base.EngineEvent | None:
    """Map a connection-level event; None for the ones wa-hub ignores (keep-alives, history…)."""
    name = kind(event)
    if name == "Connected":
        return ready(me)
    if name == "Disconnected":
        return base.Disconnected("disconnected")
    if name == "LoggedOut":
        return logged_out(event)
    if name == "TemporaryBan":
        return temporary_ban(event, now_ms)
    if name == "StreamReplaced":
        return base.LoggedOut("stream_replaced")
    if name == "ClientOutdated":
        return base.LoggedOut("client_outdated")
    if name == "ConnectFailure":
        reason = CONNECT_FAILURE_REASONS.get(int(event.Reason), "unknown")
        return base.Disconnected("connect_failure_" + reason)
    if name == "PairStatus":
        return base.Authenticated() if int(event.Status) == 2 else None  # PairStatus.SUCCESS
    return None


def message_text(message: Any) -> str | None:
    """The text of a WhatsApp message (``conversation`` or ``extendedTextMessage.text``), else None."""
    if message.HasField("extendedTextMessage"):
        return str(message.extendedTextMessage.text)
    if message.HasField("conversation"):
        return str(message.conversation)
    return None


def is_poll_update(event: Any) -> bool:
    """Whether a ``Message`` event is a (still encrypted) poll vote."""
    return bool(event.Message.HasField("pollUpdateMessage"))


def _sender(source: Any) -> tuple[str, str | None]:
    sender = jid_string(source.Sender) or jid_string(source.Chat) or ""
    alt = jid_string(source.SenderAlt)
    return sender, alt if alt != sender else None


def inbound_message(event: Any) -> base.InboundMessage | None:
    """A text ``Message`` event → InboundMessage; None for polls, media and protocol messages."""
    text = message_text(event.Message)
    if text is None:
        return None
    info = event.Info
    source = info.MessageSource
    sender, alt = _sender(source)
    return base.InboundMessage(message_id=info.ID, chat_id=jid_string(source.Chat) or sender, sender=sender,
                               text=text, timestamp=epoch_ms(int(info.Timestamp)),
                               from_me=bool(source.IsFromMe), sender_alt=alt, push_name=info.Pushname or None)


def poll_vote(event: Any, vote: Any) -> base.PollVote:
    """A poll-update ``Message`` event and its decrypted ``PollVoteMessage`` → PollVote (hashes in hex).

    An empty selection is a retracted vote.
    """
    info = event.Info
    source = info.MessageSource
    update = event.Message.pollUpdateMessage
    voter, alt = _sender(source)
    ts = int(update.senderTimestampMS) or epoch_ms(int(info.Timestamp))
    return base.PollVote(poll_message_id=update.pollCreationMessageKey.ID,
                         chat_id=jid_string(source.Chat) or voter, voter=voter, timestamp=ts,
                         selected_hashes=tuple(bytes(h).hex() for h in vote.selectedOptions), voter_alt=alt)


def receipt(event: Any) -> base.Receipt | None:
    """``Receipt`` → Receipt for delivered / read / played (one receipt may cover several ids)."""
    ack = RECEIPT_ACKS.get(int(event.Type)) if event.HasField("Type") else None
    if ack is None or not event.MessageIDs:
        return None
    return base.Receipt(message_ids=tuple(event.MessageIDs), ack=ack,
                        chat_id=jid_string(event.MessageSource.Chat),
                        timestamp=epoch_ms(int(event.Timestamp)))


_DISCONNECTED_MARKERS = ("client is nil", "websocket not connected", "not connected",
                         "doesn't contain a device jid", "not logged in", "websocket disconnected",
                         "use of closed network connection", "connection reset", "broken pipe")
_PERMANENT_MARKERS = ("not on whatsapp", "not registered", "invalid jid", "invalid recipient",
                      "unknown server", "message too long", "can't send message to",
                      "server returned error 400", "server returned error 403", "server returned error 404",
                      "server returned error 406")


def send_error(exc: BaseException) -> SendError:
    """Classify a neonize send failure into the outbox taxonomy.

    Not connected / not logged in → DisconnectedError (re-queued, no attempt counted);
    a recipient that cannot receive (not on WhatsApp, invalid JID, 400/403/404/406 from the
    server) → PermanentSendError; everything else (timeouts, 5xx, 429, unknown) → TransientSendError.
    """
    if isinstance(exc, SendError):
        return exc
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if any(m in low for m in _DISCONNECTED_MARKERS):
        return DisconnectedError(text, reason="not_connected")
    if "not on whatsapp" in low or "not registered" in low:
        return PermanentSendError(text, reason="not_on_whatsapp")
    if any(m in low for m in _PERMANENT_MARKERS):
        return PermanentSendError(text, reason="invalid_recipient")
    if "timed out" in low or "timeout" in low or "deadline exceeded" in low:
        return TransientSendError(text, reason="timeout", maybe_sent=True)  # the server may have it
    return TransientSendError(text, reason="server_error")
