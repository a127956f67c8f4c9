"""The neonize → wa-hub mapping, on real neonize protobuf objects built offline."""

from __future__ import annotations

import hashlib

import pytest

from tests.support import neonize_fixtures as fx
from wahub.domain.errors import DisconnectedError, PermanentSendError, TransientSendError
from wahub.engines import base
from wahub.engines.whatsmeow import adapter, protocol

NOW_MS = 1_767_225_600_000


def wire(ev: object) -> object:
    """Serialise and parse again, as the Go core hands events over."""
    return type(ev).FromString(ev.SerializeToString())  # type: ignore[attr-defined]


def test_enum_tables_match_neonize() -> None:
    from neonize.events import ReceiptEv, TemporaryBanEv
    from neonize.proto.Neonize_pb2 import ConnectFailureReason

    assert adapter.RECEIPT_ACKS == {ReceiptEv.DELIVERED: "delivered", ReceiptEv.READ: "read",
                                    ReceiptEv.PLAYED: "played"}
    assert {v: k.lower() for k, v in TemporaryBanEv.TempBanReason.items()} == adapter.TEMP_BAN_REASONS
    assert {v: k.lower() for k, v in ConnectFailureReason.items()} == adapter.CONNECT_FAILURE_REASONS


def test_text_message_from_lid_sender_keeps_the_phone_alternative() -> None:
    ev = wire(fx.text_ev)
    msg = adapter.inbound_message(ev)
    assert msg == base.InboundMessage(
        message_id="3EB0AAAA", chat_id="123456789012345@lid", sender="123456789012345@lid", text="hello",
        timestamp=fx.text_ev.Info.Timestamp, from_me=False, sender_alt="15551234567@c.us", push_name="Alice")


def test_extended_text_from_phone_sender_has_no_alternative() -> None:
    msg = adapter.inbound_message(wire(fx.ext_ev))
    assert msg is not None
    assert (msg.sender, msg.chat_id, msg.text, msg.sender_alt) == ("15551234567@c.us", "15551234567@c.us",
                                                                   "hi there", None)


def test_timestamps_in_seconds_are_scaled_to_ms() -> None:
    ev = fx.message_ev(fx.Message(conversation="x"), fx.source(fx.PN), ts_ms=1_767_225_600)
    msg = adapter.inbound_message(ev)
    assert msg is not None and msg.timestamp == 1_767_225_600_000


def test_protocol_enum_values_match_neonize() -> None:
    assert fx.ProtocolMessage.REVOKE == adapter.PROTOCOL_REVOKE
    assert fx.ProtocolMessage.MESSAGE_EDIT == adapter.PROTOCOL_MESSAGE_EDIT


MEDIA_CASES = [
    (fx.image_ev, {"kind": "image", "text": "parcel arrived broken", "caption": "parcel arrived broken",
                   "mimetype": "image/jpeg", "has_media": True}),
    (fx.ptt_ev, {"kind": "ptt", "text": "", "caption": None, "mimetype": "audio/ogg; codecs=opus",
                 "has_media": True}),
    (fx.audio_ev, {"kind": "audio", "mimetype": "audio/mpeg", "has_media": True}),
    (fx.video_ev, {"kind": "video", "caption": "unboxing", "mimetype": "video/mp4", "has_media": True}),
    (fx.document_ev, {"kind": "document", "filename": "invoice-1001.pdf", "caption": "my invoice",
                      "mimetype": "application/pdf", "has_media": True}),
    (fx.sticker_ev, {"kind": "sticker", "mimetype": "image/webp", "has_media": True, "caption": None}),
    (fx.vcard_ev, {"kind": "vcard", "vcards": (fx.VCARD,), "text": fx.VCARD, "has_media": False}),
    (fx.contacts_ev, {"kind": "multi_vcard", "vcards": (fx.VCARD, fx.VCARD)}),
    (fx.location_ev, {"kind": "location", "latitude": 30.0444, "longitude": 31.2357,
                      "location_name": "Tahrir Square", "location_address": "Cairo, Egypt", "has_media": False}),
]


@pytest.mark.parametrize(("ev", "expected"), MEDIA_CASES, ids=[c[1]["kind"] for c in MEDIA_CASES])
def test_every_inbound_kind_becomes_a_typed_message(ev: object, expected: dict[str, object]) -> None:
    msg = adapter.message_event(wire(ev))
    assert isinstance(msg, base.InboundMessage), msg
    assert msg.sender == "15551234567@c.us" and msg.message_id == ev.Info.ID  # type: ignore[attr-defined]
    got = {k: getattr(msg, k) for k in expected}
    assert got == expected
    assert msg.kind in base.INBOUND_KINDS


def test_quoted_reply_names_the_quoted_message_and_its_body() -> None:
    msg = adapter.message_event(wire(fx.reply_ev))
    assert isinstance(msg, base.InboundMessage)
    assert (msg.kind, msg.text, msg.quoted_message_id, msg.quoted_body, msg.quoted_participant) == (
        "chat", "Confirm", "3EB0POLL", "Order #1001: confirm?", "15550001111@c.us")
    plain = adapter.message_event(wire(fx.ext_ev))
    assert isinstance(plain, base.InboundMessage) and plain.quoted_message_id is None


def test_reaction_edit_and_revoke() -> None:
    assert adapter.message_event(wire(fx.reaction_ev)) == base.Reaction(
        message_id="3EB0REACT", target_message_id="3EB0ORDER", chat_id="15551234567@c.us",
        sender="15551234567@c.us", emoji="👍", timestamp=1_767_225_601_000)
    edit = adapter.message_event(wire(fx.edit_ev))
    assert edit == base.MessageEdit(original_message_id="3EB0ORIG", chat_id="15551234567@c.us",
                                    sender="15551234567@c.us", text="actually CANCEL my order",
                                    timestamp=fx.edit_ev.Info.Timestamp)
    revoke = adapter.message_event(wire(fx.revoke_ev))
    assert revoke == base.MessageRevoke(original_message_id="3EB0ORIG", chat_id="15551234567@c.us",
                                        sender="15551234567@c.us", timestamp=fx.revoke_ev.Info.Timestamp)
    # an edit whatsmeow already unwrapped (the protocol message at the top) maps the same
    inner = fx.message_ev(fx.edit_ev.Message.editedMessage.message, fx.source(fx.PN), ts_ms=edit.timestamp)
    assert adapter.message_event(wire(inner)) == edit
    # other protocol messages (history sync, key shares) are not user events
    sync = fx.ProtocolMessage(type=fx.ProtocolMessage.HISTORY_SYNC_NOTIFICATION)
    other = fx.message_ev(fx.Message(protocolMessage=sync), fx.source(fx.PN))
    assert adapter.message_event(wire(other)) is None


def test_undecryptable_vote_keeps_the_poll_and_the_voter() -> None:
    vote = adapter.undecryptable_vote(wire(fx.poll_update_ev))
    assert (vote.poll_message_id, vote.voter, vote.voter_alt, vote.decrypt_failed) == (
        "3EB0POLL", "123456789012345@lid", "15551234567@c.us", True)
    assert vote.selected_hashes is None and vote.selected_options is None


def test_poll_creation_and_poll_update_are_not_text() -> None:
    assert adapter.inbound_message(wire(fx.poll_ev)) is None
    assert adapter.inbound_message(wire(fx.poll_update_ev)) is None
    assert adapter.is_poll_update(wire(fx.poll_update_ev))
    assert not adapter.is_poll_update(wire(fx.text_ev))


def test_poll_vote_carries_option_hashes_in_hex() -> None:
    ev = wire(fx.poll_update_ev)
    vote = adapter.poll_vote(ev, wire(fx.decrypted_vote))
    assert vote.poll_message_id == "3EB0POLL"
    assert vote.voter == "123456789012345@lid" and vote.voter_alt == "15551234567@c.us"
    assert vote.selected_hashes == (hashlib.sha256(b"Sushi").hexdigest(),)
    assert vote.selected_options is None
    assert vote.timestamp == fx.poll_update_ev.Message.pollUpdateMessage.senderTimestampMS
    # the hashes match the poll the client built: option names → SHA-256
    names = {hashlib.sha256(o.optionName.encode()).hexdigest(): o.optionName
             for o in fx.poll_msg.pollCreationMessage.options}
    assert [names[h] for h in vote.selected_hashes] == ["Sushi"]


def test_retracted_vote_has_no_hashes() -> None:
    vote = adapter.poll_vote(wire(fx.poll_update_ev), fx.PollVoteMessage(selectedOptions=[]))
    assert vote.selected_hashes == ()


def test_receipt_covering_several_ids() -> None:
    rec = adapter.receipt(wire(fx.receipt_ev))
    assert rec == base.Receipt(message_ids=("3EB0A", "3EB0B", "3EB0C"), ack="read",
                               chat_id="123456789012345@lid", timestamp=fx.receipt_ev.Timestamp * 1000)


@pytest.mark.parametrize(("kind", "ack"), [("DELIVERED", "delivered"), ("READ", "read"), ("PLAYED", "played"),
                                           ("READ_SELF", None), ("SENDER", None), ("RETRY", None)])
def test_receipt_types(kind: str, ack: str | None) -> None:
    ev = fx.ReceiptEv(MessageSource=fx.source(fx.PN), MessageIDs=["A"], Timestamp=1,
                      Type=fx.ReceiptEv.ReceiptType.Value(kind))
    rec = adapter.receipt(wire(ev))
    assert (rec.ack if rec else None) == ack


def test_logged_out_and_temporary_ban() -> None:
    assert adapter.connection_event(wire(fx.logged_out_ev), NOW_MS) == base.LoggedOut("logged_out")
    ban = adapter.connection_event(wire(fx.temp_ban_ev), NOW_MS)
    assert ban == base.TemporaryBan(code="send_to_too_many_people", expires_at=NOW_MS + 3_600_000)
    no_expiry = fx.TemporaryBanEv(Code=fx.TemporaryBanEv.BLOCKED_BY_USERS, Expire=0)
    assert adapter.temporary_ban(wire(no_expiry), NOW_MS) == base.TemporaryBan("blocked_by_users", None)


def test_connection_events() -> None:
    from neonize.proto.Neonize_pb2 import Device

    me = Device(JID=fx.PN, PushName="Shop")
    assert adapter.connection_event(wire(fx.connected_ev), NOW_MS, me) == base.Ready(
        phone="15551234567", push_name="Shop", jid="15551234567@c.us")
    assert adapter.connection_event(wire(fx.connected_ev), NOW_MS) == base.Ready()
    assert adapter.connection_event(wire(fx.disconnected_ev), NOW_MS) == base.Disconnected("disconnected")
    assert adapter.connection_event(wire(fx.stream_replaced_ev), NOW_MS) == base.LoggedOut("stream_replaced")
    assert adapter.connection_event(wire(fx.pair_ok_ev), NOW_MS) == base.Authenticated()
    assert adapter.connection_event(wire(fx.qr_ev), NOW_MS) is None


def test_empty_jid_is_none_and_device_suffix_is_dropped() -> None:
    assert adapter.jid_string(fx.EMPTY) is None
    assert adapter.jid_string(fx.jid("15551234567", device=12)) == "15551234567@c.us"
    assert adapter.jid_string(fx.jid("120363000000000000", "g.us")) == "120363000000000000@g.us"


@pytest.mark.parametrize(("message", "cls", "reason"), [
    ("client is nil", DisconnectedError, "not_connected"),
    ("websocket not connected", DisconnectedError, "not_connected"),
    ("the store doesn't contain a device JID", DisconnectedError, "not_connected"),
    ("15550000000 is not on WhatsApp", PermanentSendError, "not_on_whatsapp"),
    ("server returned error 406", PermanentSendError, "invalid_recipient"),
    ("invalid JID", PermanentSendError, "invalid_recipient"),
    ("timed out waiting for message send response", TransientSendError, "timeout"),
    ("server returned error 500", TransientSendError, "server_error"),
    ("server returned error 429", TransientSendError, "server_error"),
    ("something new", TransientSendError, "unknown"),
    ("no LID for user 15551234567", PermanentSendError, "invalid_recipient"),
    ("failed to get LID for 15551234567@s.whatsapp.net: no LID found", PermanentSendError, "invalid_recipient"),
])
def test_send_error_mapping(message: str, cls: type, reason: str) -> None:
    from neonize.exc import SendMessageError

    err = adapter.send_error(SendMessageError(message))
    assert type(err) is cls and err.reason == reason and str(err) == message
    assert not err.maybe_sent  # nothing was written


@pytest.mark.parametrize(("message", "cls", "maybe_sent"), [
    ("context deadline exceeded", TransientSendError, True),
    ("timed out waiting for message send response", TransientSendError, True),
    ("websocket disconnected before message send returned response", DisconnectedError, True),
    ("write: broken pipe", DisconnectedError, True),
    ("something nobody has seen", TransientSendError, True),
    ("websocket not connected", DisconnectedError, False),  # refused before the write
    ("server returned error 500", TransientSendError, False),  # the server answered: not taken
    ("no LID for user 15551234567", PermanentSendError, False),
])
def test_failures_after_the_write_may_have_been_delivered(message: str, cls: type, maybe_sent: bool) -> None:
    err = adapter.send_error(message, written=True)
    assert type(err) is cls and err.maybe_sent is maybe_sent
    back = protocol.error_from_wire(protocol.decode(protocol.encode(protocol.reply_error(1, err)))["error"])
    assert type(back) is cls and back.maybe_sent is maybe_sent and back.reason == err.reason


def test_state_conflict_travels_the_protocol() -> None:
    err = base.EngineStateConflict("not waiting", reason="not_waiting_for_login")
    back = protocol.error_from_wire(protocol.decode(protocol.encode(protocol.reply_error(3, err)))["error"])
    assert isinstance(back, base.EngineStateConflict) and back.reason == "not_waiting_for_login"


@pytest.mark.parametrize(("detail", "reason"), [
    ('failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send handshake request: Get '
     '"https://web.whatsapp.com/ws/chat": dial tcp: lookup web.whatsapp.com on 10.0.0.53:53: no such host', "dns"),
    ("failed to WebSocket dial: tls: failed to verify certificate: x509: certificate signed by unknown authority",
     "tls"),
    ("dial tcp 157.240.0.53:443: connect: connection refused", "refused"),
    ("dial tcp 157.240.0.53:443: i/o timeout", "timeout"),
    ("dial tcp 157.240.0.53:443: connect: network is unreachable", "network"),
])
def test_connect_failures_name_their_reason(detail: str, reason: str) -> None:
    assert adapter.connect_failed(Exception(detail)) == base.ConnectFailed(reason=reason, detail=detail)


def test_send_error_travels_the_protocol_unchanged() -> None:
    err = adapter.send_error(Exception("not on whatsapp"))
    back = protocol.error_from_wire(protocol.decode(protocol.encode(protocol.reply_error(1, err)))["error"])
    assert type(back) is PermanentSendError and back.reason == "not_on_whatsapp"


def test_events_travel_the_protocol_unchanged() -> None:
    vote = adapter.poll_vote(wire(fx.poll_update_ev), wire(fx.decrypted_vote))
    for ev in (vote, adapter.receipt(wire(fx.receipt_ev)), adapter.inbound_message(wire(fx.text_ev)),
               base.QrTimeout(), base.TemporaryBan("x", 5), adapter.undecryptable_vote(wire(fx.poll_update_ev)),
               *(adapter.message_event(wire(e)) for e in (fx.location_ev, fx.contacts_ev, fx.reply_ev, fx.reaction_ev,
                                                          fx.edit_ev, fx.revoke_ev)),
               base.ConnectFailed("dns", "no such host")):
        assert ev is not None
        line = protocol.encode(protocol.event_to_wire(ev, NOW_MS))
        assert protocol.event_from_wire(protocol.decode(line)) == ev


def test_worker_log_lines_are_relayed_as_structured_events() -> None:
    import json
    import logging

    from structlog.testing import capture_logs

    from wahub.engines.whatsmeow.engine import relay_worker_log
    from wahub.engines.whatsmeow.workerio import JsonLineFormatter

    record = logging.LogRecord("wahub.whatsmeow.worker", logging.WARNING, __file__, 1,
                               "connect_failed reason=%s error=%s", ("dns", "no such host"), None)
    line = JsonLineFormatter().format(record)
    assert json.loads(line) == {"event": "connect_failed", "level": "warning", "logger": "wahub.whatsmeow.worker",
                                "detail": "reason=dns error=no such host"}
    with capture_logs() as logs:
        relay_worker_log(line.encode() + b"\n", "shop", 4242)
        relay_worker_log(b"panic: runtime error: invalid memory address\n", "shop", 4242)
        relay_worker_log(b"\n", "shop", 4242)
    assert logs == [
        {"event": "worker.connect_failed", "log_level": "warning", "instance_id": "shop", "pid": 4242,
         "logger": "wahub.whatsmeow.worker", "detail": "reason=dns error=no such host"},
        {"event": "worker_output", "log_level": "warning", "instance_id": "shop", "pid": 4242,
         "line": "panic: runtime error: invalid memory address"}]
