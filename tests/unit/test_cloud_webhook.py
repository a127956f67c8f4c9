"""Meta's webhook calls → engine events; signature and handshake checks (fixtures shaped like Meta's)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.support import cloud_payloads as fx
from wahub.engines import base
from wahub.engines.cloud import webhook

CHAT = f"{fx.CUSTOMER}@c.us"


def parse(payload: dict[str, Any]) -> list[webhook.CloudEvent]:
    return webhook.parse(payload, phone_number_id=fx.PHONE_NUMBER_ID)


def test_text_message_becomes_an_inbound_message_with_the_profile_name() -> None:
    assert parse(fx.text("hello")) == [base.InboundMessage(
        message_id="wamid.TEXT1", chat_id=CHAT, sender=CHAT, text="hello", timestamp=fx.TS * 1000,
        push_name="Sheena Nelson")]


@pytest.mark.parametrize("payload", [fx.button_reply("Confirm"), fx.list_reply("Confirm"),
                                     fx.template_quick_reply("Confirm", button_text="تأكيد الطلب")])
def test_button_list_and_template_replies_are_votes_with_the_option_text_on_the_poll(payload: Any) -> None:
    assert parse(payload) == [base.PollVote(poll_message_id=fx.POLL_WAMID, chat_id=CHAT, voter=CHAT,
                                            timestamp=fx.TS * 1000, selected_options=("Confirm",))]


def test_a_long_option_comes_back_as_its_hash_for_the_hub_to_resolve() -> None:
    option = "ت" * 72
    [vote] = parse(fx.list_reply(option))
    assert isinstance(vote, base.PollVote) and vote.selected_options is None
    assert vote.selected_hashes == (hashlib.sha256(option.encode()).hexdigest(),)


def test_a_reply_to_buttons_wa_hub_did_not_send_is_an_ordinary_message() -> None:
    payload = fx.button_reply("Confirm")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"]["button_reply"]["id"] = "cancel-button"
    [msg] = parse(payload)
    assert isinstance(msg, base.InboundMessage) and msg.text == "Confirm"


def test_statuses_become_acks_in_order() -> None:
    events = parse(fx.statuses("sent", "delivered", "read"))
    assert [(e.message_ids, e.ack, e.chat_id) for e in events if isinstance(e, base.Receipt)] == [
        ((fx.POLL_WAMID,), "server", CHAT), ((fx.POLL_WAMID,), "delivered", CHAT), ((fx.POLL_WAMID,), "read", CHAT)]


def test_failed_status_carries_the_graph_code_and_reason() -> None:
    assert parse(fx.failed_outside_window()) == [webhook.DeliveryFailed(
        message_id=fx.POLL_WAMID, chat_id=CHAT, timestamp=(fx.TS + 5) * 1000, code=131047,
        title="Re-engagement message", reason="outside_service_window")]


def test_changes_for_another_phone_number_are_ignored() -> None:
    assert webhook.parse(fx.text(phone_number_id="999"), phone_number_id=fx.PHONE_NUMBER_ID) == []


@pytest.mark.parametrize("junk", [None, [], {"object": "page"}, {"object": "whatsapp_business_account", "entry": 3},
                                  {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": 1}]}]}])
def test_unexpected_shapes_parse_to_nothing_and_never_raise(junk: Any) -> None:
    assert webhook.parse(junk, phone_number_id=fx.PHONE_NUMBER_ID) == []


def test_signature_accepts_meta_s_and_refuses_forged_or_missing_ones() -> None:
    body, header = fx.signed(fx.text())
    assert webhook.signature_valid(fx.APP_SECRET, body, header)
    assert not webhook.signature_valid(fx.APP_SECRET, body + b" ", header)  # body changed
    assert not webhook.signature_valid(fx.APP_SECRET, body, fx.signed(fx.text(), secret="other")[1])
    assert not webhook.signature_valid(fx.APP_SECRET, body, header.replace("sha256=", "sha1="))
    assert not webhook.signature_valid(fx.APP_SECRET, body, None)
    assert not webhook.signature_valid(fx.APP_SECRET, body, "sha256=ünïcode")


def test_handshake_echoes_the_challenge_only_for_subscribe_with_the_right_token() -> None:
    assert webhook.challenge(fx.VERIFY_TOKEN, "subscribe", fx.VERIFY_TOKEN, "1158201444") == "1158201444"
    assert webhook.challenge(fx.VERIFY_TOKEN, "subscribe", "wrong", "1158201444") is None
    assert webhook.challenge(fx.VERIFY_TOKEN, "unsubscribe", fx.VERIFY_TOKEN, "1") is None
    assert webhook.challenge(fx.VERIFY_TOKEN, "subscribe", None, "1") is None
