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
    ("something new", TransientSendError, "server_error"),
])
def test_send_error_mapping(message: str, cls: type, reason: str) -> None:
    from neonize.exc import SendMessageError

    err = adapter.send_error(SendMessageError(message))
    assert type(err) is cls and err.reason == reason and str(err) == message


def test_send_error_travels_the_protocol_unchanged() -> None:
    err = adapter.send_error(Exception("not on whatsapp"))
    back = protocol.error_from_wire(protocol.decode(protocol.encode(protocol.reply_error(1, err)))["error"])
    assert type(back) is PermanentSendError and back.reason == "not_on_whatsapp"


def test_events_travel_the_protocol_unchanged() -> None:
    vote = adapter.poll_vote(wire(fx.poll_update_ev), wire(fx.decrypted_vote))
    for ev in (vote, adapter.receipt(wire(fx.receipt_ev)), adapter.inbound_message(wire(fx.text_ev)),
               base.QrTimeout(), base.TemporaryBan("x", 5)):
        assert ev is not None
        line = protocol.encode(protocol.event_to_wire(ev, NOW_MS))
        assert protocol.event_from_wire(protocol.decode(line)) == ev
