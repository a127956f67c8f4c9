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
from wahub.engines.whatsmeow import content

# neonize.proto.Neonize_pb2.Receipt.ReceiptType values (checked against neonize in the unit tests).
RECEIPT_ACKS = {1: "delivered", 4: "read", 6: "played"}
# neonize.proto.Neonize_pb2.TemporaryBan.TempBanReason values.
TEMP_BAN_REASONS = {1: "send_to_too_many_people", 2: "blocked_by_users", 3: "created_too_many_groups",
                    4: "sent_too_many_same_message", 5: "broadcast_list"}
# neonize.proto.Neonize_pb2.ConnectFailureReason values.
CONNECT_FAILURE_REASONS = {1: "generic", 2: "logged_out", 3: "temp_banned", 4: "main_device_gone",
                           5: "unknown_logout", 6: "client_outdated", 7: "bad_user_agent",
                           8: "internal_server_error", 9: "experimental", 10: "service_unavailable"}
# waE2E.ProtocolMessage.Type values (checked against neonize in the unit tests).
PROTOCOL_REVOKE = 0
PROTOCOL_MESSAGE_EDIT = 14
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
    """The text of a WhatsApp message (conversation, extended text or media caption), else None."""
    return content.text_of(message)


def is_poll_update(event: Any) -> bool:
    """Whether a ``Message`` event is a (still encrypted) poll vote."""
    return bool(content.unwrap(event.Message).HasField("pollUpdateMessage"))


def _sender(source: Any) -> tuple[str, str | None]:
    sender = jid_string(source.Sender) or jid_string(source.Chat) or ""
    alt = jid_string(source.SenderAlt)
    return sender, alt if alt != sender else None


def _envelope(event: Any) -> dict[str, Any]:
    """chat_id, sender, timestamp, from_me, sender_alt of a ``Message`` event."""
    source = event.Info.MessageSource
    sender, alt = _sender(source)
    return {"chat_id": jid_string(source.Chat) or sender, "sender": sender,
            "timestamp": epoch_ms(int(event.Info.Timestamp)), "from_me": bool(source.IsFromMe),
            "sender_alt": alt}


def inbound_message(event: Any) -> base.InboundMessage | None:
    """A user ``Message`` event (text, media, contact, location) → InboundMessage; None for the rest.

    Polls, votes, reactions and protocol messages (edits, deletes) are not InboundMessages: see
    :func:`message_event`.
    """
    fields = content.describe(event.Message)
    if fields is None:
        return None
    reply = content.quoted(event.Message)
    if reply.get("quoted_participant"):
        reply["quoted_participant"] = chatid.from_whatsmeow(reply["quoted_participant"])
    info = event.Info
    return base.InboundMessage(message_id=info.ID, push_name=info.Pushname or None, **_envelope(event),
                               **fields, **reply)


def message_event(event: Any) -> base.EngineEvent | None:
    """Any non-vote ``Message`` event → InboundMessage | Reaction | MessageEdit | MessageRevoke, else None.

    An edit arrives as a protocol message ``MESSAGE_EDIT`` (possibly inside ``editedMessage``)
    naming the original id and carrying the new content; a delete-for-everyone as ``REVOKE``.
    """
    message = content.unwrap(event.Message)
    env = _envelope(event)
    if message.HasField("protocolMessage"):
        proto = message.protocolMessage
        if int(proto.type) == PROTOCOL_REVOKE:
            return base.MessageRevoke(original_message_id=str(proto.key.ID), **env)
        if int(proto.type) == PROTOCOL_MESSAGE_EDIT:
            text = content.text_of(proto.editedMessage) if proto.HasField("editedMessage") else None
            return base.MessageEdit(original_message_id=str(proto.key.ID), text=text or "", **env)
        return None
    if message.HasField("reactionMessage"):
        reaction = message.reactionMessage
        ts = int(reaction.senderTimestampMS) or env["timestamp"]
        return base.Reaction(message_id=event.Info.ID, target_message_id=str(reaction.key.ID),
                             emoji=str(reaction.text), **{**env, "timestamp": ts})
    return inbound_message(event)


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


def undecryptable_vote(event: Any) -> base.PollVote:
    """A poll-update ``Message`` event whose vote could not be decrypted → PollVote(decrypt_failed=True)."""
    env = _envelope(event)
    update = content.unwrap(event.Message).pollUpdateMessage
    ts = int(update.senderTimestampMS) or env["timestamp"]
    return base.PollVote(poll_message_id=update.pollCreationMessageKey.ID, chat_id=env["chat_id"],
                         voter=env["sender"], timestamp=ts, voter_alt=env["sender_alt"], decrypt_failed=True)


def receipt(event: Any) -> base.Receipt | None:
    """``Receipt`` → Receipt for delivered / read / played (one receipt may cover several ids)."""
    ack = RECEIPT_ACKS.get(int(event.Type)) if event.HasField("Type") else None
    if ack is None or not event.MessageIDs:
        return None
    return base.Receipt(message_ids=tuple(event.MessageIDs), ack=ack,
                        chat_id=jid_string(event.MessageSource.Chat),
                        timestamp=epoch_ms(int(event.Timestamp)))


# Failures before anything was written: the message cannot have left (re-queue, no attempt).
_NOT_CONNECTED_MARKERS = ("client is nil", "websocket not connected", "not connected",
                          "doesn't contain a device jid", "not logged in")
# The connection went away while the request may have been on the wire.
_CONNECTION_LOST_MARKERS = ("websocket disconnected", "use of closed network connection", "connection reset",
                            "broken pipe", "unexpected eof", "connection closed")
_PERMANENT_MARKERS = ("not on whatsapp", "not registered", "invalid jid", "invalid recipient",
                      "unknown server", "message too long", "can't send message to", "no lid for user",
                      "no lid found", "failed to get lid", "no signal session", "recipient ad jid",
                      "server returned error 400", "server returned error 403", "server returned error 404",
                      "server returned error 406")
# The server answered with an error: it did not take the message.
_REJECTED_MARKERS = ("server returned error", "rate-overlimit", "rate overlimit")
_TIMEOUT_MARKERS = ("timed out", "timeout", "deadline exceeded")


def send_error(exc: BaseException | str, *, written: bool = False) -> SendError:
    """Classify a neonize send failure into the outbox taxonomy.

    ``written`` is True when the failure came from the send call itself (the request may have
    reached WhatsApp); False for failures before it (building the message, the number check).

    Not connected / not logged in → DisconnectedError (re-queued, no attempt counted);
    a recipient that cannot receive (not on WhatsApp, invalid JID, "no LID for user", 400/403/404/406
    from the server) → PermanentSendError; the server's own error answer (5xx, 429) →
    TransientSendError. When ``written``: a connection lost while waiting for the answer →
    DisconnectedError, a timeout and any unknown error → TransientSendError, both ``maybe_sent``
    (whatsmeow may have delivered it; retrying could send it twice).
    """
    if isinstance(exc, SendError):
        return exc
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    low = text.lower()
    if any(m in low for m in _NOT_CONNECTED_MARKERS):
        return DisconnectedError(text, reason="not_connected")
    if "not on whatsapp" in low or "not registered" in low:
        return PermanentSendError(text, reason="not_on_whatsapp")
    if any(m in low for m in _PERMANENT_MARKERS):
        return PermanentSendError(text, reason="invalid_recipient")
    if any(m in low for m in _REJECTED_MARKERS):
        return TransientSendError(text, reason="server_error")
    if any(m in low for m in _CONNECTION_LOST_MARKERS):
        return DisconnectedError(text, reason="connection_lost", maybe_sent=written)
    if any(m in low for m in _TIMEOUT_MARKERS):
        return TransientSendError(text, reason="timeout", maybe_sent=written)
    return TransientSendError(text, reason="unknown", maybe_sent=written)


def connect_failed(exc: BaseException | str) -> base.ConnectFailed:
    """A failed ``connect`` (WhatsApp unreachable) → ConnectFailed with its reason.

    ``dns`` (lookup failed, no such host), ``tls`` (handshake, certificate), ``refused``,
    ``timeout``, else ``network``. neonize raises with whatsmeow's dial error, e.g. ``failed to dial
    whatsapp web websocket: … dial tcp: lookup web.whatsapp.com …: no such host``.
    """
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    low = text.lower()
    if "lookup " in low or "no such host" in low or "name resolution" in low:
        reason = "dns"
    elif "tls" in low or "x509" in low or "certificate" in low:
        reason = "tls"
    elif "connection refused" in low:
        reason = "refused"
    elif any(m in low for m in _TIMEOUT_MARKERS):
        reason = "timeout"
    else:
        reason = "network"
    return base.ConnectFailed(reason=reason, detail=text[:500])
