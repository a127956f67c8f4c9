"""A wa-hub poll as a Cloud API message: buttons, list, template, and the reply ids that come back."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wahub.domain.errors import PermanentSendError
from wahub.engines.cloud import polls
from wahub.engines.cloud.errors import OUTSIDE_SERVICE_WINDOW, OutsideServiceWindow

TEMPLATE = polls.PollTemplate("order_confirmation", "ar", ("#1001", "350 EGP"))


def test_three_short_options_become_reply_buttons_whose_ids_give_back_the_option() -> None:
    msg = polls.poll_message("Confirm order #1001?", ["Confirm", "Cancel", "Change address"], template=None,
                             window=True)
    assert msg["type"] == "interactive" and msg["interactive"]["type"] == "button"
    buttons = msg["interactive"]["action"]["buttons"]
    assert [b["reply"]["title"] for b in buttons] == ["Confirm", "Cancel", "Change address"]
    assert [polls.parse_reply_id(b["reply"]["id"]) for b in buttons] == [
        polls.Reply(option="Confirm"), polls.Reply(option="Cancel"), polls.Reply(option="Change address")]
    assert msg["interactive"]["body"]["text"] == "Confirm order #1001?"


def test_more_than_three_options_or_a_title_over_20_characters_become_a_list() -> None:
    four = polls.poll_message("Pick a slot", ["9-12", "12-15", "15-18", "18-21"], template=None, window=True)
    assert four["interactive"]["type"] == "list"
    rows = four["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == ["9-12", "12-15", "15-18", "18-21"]
    long = "Confirm and deliver tomorrow morning"  # 36 characters: too long for a button or a row title
    two = polls.poll_message("Confirm?", [long, "Cancel"], template=None, window=None, list_button="اختر")
    row = two["interactive"]["action"]["sections"][0]["rows"][0]
    assert two["interactive"]["type"] == "list" and two["interactive"]["action"]["button"] == "اختر"
    assert len(row["title"]) == 24 and row["title"].endswith("…") and row["description"] == long
    assert polls.parse_reply_id(row["id"]) == polls.Reply(option=long)


def test_template_carries_the_parameters_and_one_quick_reply_payload_per_option_in_order() -> None:
    msg = polls.poll_message("ignored", ["تأكيد", "إلغاء"], template=TEMPLATE, window=False)
    tpl = msg["template"]
    assert msg["type"] == "template"
    assert (tpl["name"], tpl["language"]) == ("order_confirmation", {"policy": "deterministic", "code": "ar"})
    body, first, second = tpl["components"]
    assert body == {"type": "body",
                    "parameters": [{"type": "text", "text": "#1001"}, {"type": "text", "text": "350 EGP"}]}
    assert (first["index"], second["index"]) == ("0", "1")
    assert polls.parse_reply_id(first["parameters"][0]["payload"]) == polls.Reply(option="تأكيد")
    assert polls.parse_reply_id(second["parameters"][0]["payload"]) == polls.Reply(option="إلغاء")


def test_closed_window_without_template_is_a_clear_422_error_never_a_silent_send() -> None:
    with pytest.raises(OutsideServiceWindow) as caught:
        polls.poll_message("Confirm?", ["Yes", "No"], template=None, window=False)
    assert caught.value.reason == OUTSIDE_SERVICE_WINDOW and caught.value.status_code == 422
    assert isinstance(caught.value, PermanentSendError)
    assert "template" in str(caught.value)


def test_service_window_is_24_hours_after_the_customers_last_message() -> None:
    now = 1_767_225_600_000
    assert polls.window_open(now - polls.SERVICE_WINDOW_MS + 1, now)
    assert not polls.window_open(now - polls.SERVICE_WINDOW_MS, now)
    assert not polls.window_open(None, now)


@pytest.mark.parametrize(("options", "reason"), [
    (["a"] * 2, "invalid_poll"),
    ([str(i) for i in range(11)], "invalid_poll"),
    (["x" * 73, "no"], "too_long"),
    (["Confirm delivery to home address", "Confirm delivery to home office"], "invalid_poll"),  # same 23 first
])
def test_polls_the_cloud_api_cannot_carry_fail_permanently_with_a_reason(options: list[str], reason: str) -> None:
    with pytest.raises(PermanentSendError) as caught:
        polls.poll_message("Q?", options, template=None, window=True)
    assert caught.value.reason == reason


def test_caption_over_the_interactive_body_limit_is_too_long() -> None:
    with pytest.raises(PermanentSendError) as caught:
        polls.poll_message("x" * 1025, ["a", "b"], template=None, window=True)
    assert caught.value.reason == "too_long"


def test_an_option_too_long_for_its_id_travels_as_its_sha256_which_the_hub_resolves() -> None:
    option = "ت" * 72
    rid = polls.reply_id(option)
    assert len(rid) <= polls.MAX_REPLY_ID
    assert polls.parse_reply_id(rid) == polls.Reply(option_hash=hashlib.sha256(option.encode()).hexdigest())


@pytest.mark.parametrize("value", ["cancel-button", "wahub:o:", "wahub:o:!!!", "wahub:h:zz", "wahub:o:_w"])
def test_foreign_or_damaged_ids_are_not_votes(value: str) -> None:
    assert polls.parse_reply_id(value) is None


@given(st.text(min_size=1, max_size=100))
def test_reply_ids_are_stable_bounded_and_give_back_the_option(option: str) -> None:
    rid = polls.reply_id(option)
    assert rid == polls.reply_id(option) and len(rid) <= polls.MAX_REPLY_ID
    reply = polls.parse_reply_id(rid)
    assert reply is not None
    assert reply.option == option or reply.option_hash == hashlib.sha256(option.encode()).hexdigest()


def test_template_from_api_shape_names_the_bad_field() -> None:
    assert polls.PollTemplate.from_json(TEMPLATE.to_json()) == TEMPLATE
    with pytest.raises(ValueError, match="template.language"):
        polls.PollTemplate.from_json({"name": "x"})
