import pytest

from wahub.domain import chatid
from wahub.domain.errors import InvalidInput
from wahub.edge.status import status_of


@pytest.mark.parametrize("raw", ["+20 100 000 0001", "201000000001", "201000000001@c.us",
                                 "201000000001@s.whatsapp.net", " 201000000001 ", "+20-100-000-0001",
                                 "(20) 100 000 0001", "201000000001:12@s.whatsapp.net"])
def test_people_become_canonical_c_us(raw: str) -> None:
    assert chatid.normalize(raw) == "201000000001@c.us"


@pytest.mark.parametrize("raw", ["120363025246125486@g.us", "123456789-1600000000@g.us", "27423456789012@lid",
                                 "120363025246125486@newsletter", "120363025246125486@broadcast"])
def test_special_ids_are_kept(raw: str) -> None:
    assert chatid.normalize(raw) == raw


def test_status_broadcast_is_refused_unless_allowed() -> None:
    """Sending to status@broadcast would post a Status on the customer's real account."""
    with pytest.raises(InvalidInput) as err:
        chatid.normalize("status@broadcast")
    assert "ALLOW_STATUS_BROADCAST" in str(err.value)
    assert chatid.normalize("status@broadcast", allow_status_broadcast=True) == "status@broadcast"


@pytest.mark.parametrize(("raw", "canonical"), [
    ("00201000000001", "201000000001@c.us"),        # international 00 prefix
    ("+20 0100 000 0001", "201000000001@c.us"),     # trunk 0 written after the country code
    ("+44 (0) 7700 900001", "447700900001@c.us"),   # the (0) trunk marker
    ("0044 7700 900001", "447700900001@c.us"),
    ("2001000000001", "201000000001@c.us"),
    ("+1 (415) 555-0100", "14155550100@c.us"),
    ("+7 912 345 67 89", "79123456789@c.us"),
    ("+39 06 1234 5678", "390612345678@c.us"),      # Italian numbers really begin with 0
    ("+225 07 12 34 56 78", "2250712345678@c.us"),  # so do Côte d'Ivoire's
])
def test_people_s_spellings_become_the_international_number(raw: str, canonical: str) -> None:
    assert chatid.normalize(raw) == canonical


def test_every_spelling_of_one_number_is_one_chat() -> None:
    spellings = ["201000000001", "+20 100 000 0001", "+20 0100 000 0001", "00201000000001", "0020 100 000 0001",
                 "(+20) 100-000-0001", "201000000001@c.us", "201000000001@s.whatsapp.net"]
    assert {chatid.normalize(s) for s in spellings} == {"201000000001@c.us"}
    assert chatid.normalize("01000000001", default_country_code="20") == "201000000001@c.us"


def test_a_national_number_without_country_code_is_refused_saying_so() -> None:
    with pytest.raises(InvalidInput) as err:
        chatid.normalize("01000000001", field="chatId")
    assert status_of(err.value) == 400
    assert "chatId" in str(err.value) and "national number" in str(err.value)
    assert "country code" in str(err.value)


@pytest.mark.parametrize("raw", ["+0 100 000 0001", "+00 100 000 0001"])
def test_a_number_without_a_possible_country_code_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        chatid.normalize(raw)


def test_jids_are_never_rewritten() -> None:
    assert chatid.normalize("2001000000001@c.us") == "2001000000001@c.us"


@pytest.mark.parametrize("raw", ["", "   ", "abc", "12345", "1234567890123456", "+20 100 abc", "2010@x.com",
                                 "abc@g.us", "abc@lid", "@c.us", None, 201000000001, ["201000000001"]])
def test_anything_else_is_rejected_with_the_field_name(raw: object) -> None:
    with pytest.raises(InvalidInput) as err:
        chatid.normalize(raw, field="chatId")
    assert status_of(err.value) == 400
    assert "chatId" in str(err.value)


def test_whatsmeow_forms_round_trip() -> None:
    assert chatid.to_whatsmeow("201000000001@c.us") == "201000000001@s.whatsapp.net"
    assert chatid.from_whatsmeow("201000000001:3@s.whatsapp.net") == "201000000001@c.us"
    assert chatid.to_whatsmeow("120363025246125486@g.us") == "120363025246125486@g.us"
    assert chatid.from_whatsmeow("27423456789012@lid") == "27423456789012@lid"


def test_instance_ids_are_sanitised_names() -> None:
    assert chatid.instance_id_from_name("WASP-shop.myshopify.com") == "WASP-shop_myshopify_com"
    assert chatid.instance_id_from_name("<script>alert(1)</script>") == "_script_alert_1___script_"
    with pytest.raises(InvalidInput):
        chatid.instance_id_from_name("  ")


@pytest.mark.parametrize("raw", ["٢٠١٠٠٠٠٠٠٠٠١", "+٢٠ ١٠٠ ٠٠٠ ٠٠٠١", "２０１００００００００１", "۲۰۱۰۰۰۰۰۰۰۰۱@c.us"])
def test_unicode_digits_become_ascii(raw: str) -> None:
    """Numbers typed on Arabic or full-width keyboards address (and dedupe as) the same chat."""
    assert chatid.normalize(raw) == "201000000001@c.us"


def test_a_number_that_is_not_a_string_is_named() -> None:
    with pytest.raises(InvalidInput) as err:
        chatid.normalize(201000000001, field="chatId")
    assert "chatId must be a string" in str(err.value)
