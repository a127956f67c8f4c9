"""Chat ids (JIDs): parse what clients send into wa-hub's canonical external form.

Accepted (DESIGN §5): ``+20 100 000 0001``, ``201000000001``, ``201000000001@c.us``,
``201000000001@s.whatsapp.net`` → ``201000000001@c.us``. Group (``@g.us``), hidden-number
(``@lid``), channel (``@newsletter``) and broadcast-list ids are kept as they are;
``status@broadcast`` (which posts a Status on the linked phone) only when explicitly allowed.
Anything else raises :class:`InvalidChatId`.

Phone numbers as people write them, so that every spelling of one number is one chat (and one
idempotency fingerprint):

* an international ``00`` prefix is the same as ``+``: ``00201000000001`` → ``201000000001``;
* the trunk ``0`` written after the country code is dropped: ``+20 0100 000 0001`` and
  ``+44 (0) 7700 900001`` → ``201000000001``, ``447700900001``. The country code is found with the
  E.164 table (codes are prefix-free, :func:`country_code`); countries whose national numbers
  really begin with 0 keep it (:data:`ZERO_IS_PART_OF_NUMBER`: Italy, San Marino, Vatican,
  Côte d'Ivoire, Benin, Gabon, Congo). Only numbers are rewritten, never ``@c.us`` ids, which are
  WhatsApp's own exact form;
* a national number (one leading ``0`` and no country code, ``01000000001``) is refused with a
  message saying so, or completed with ``default_country_code`` (``20`` → ``201000000001``).
"""

from __future__ import annotations

import re
import unicodedata

from wahub.domain.errors import InvalidInput

# E.164 allows at most 15 digits; shorter than 7 is never a routable WhatsApp number.
_MIN_DIGITS = 7
_MAX_DIGITS = 15
_PHONE_DECORATION = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"[0-9]+")
_KEPT_SERVERS = {"g.us": re.compile(r"\d+(-\d+)?"), "lid": re.compile(r"\d+(:\d+)?"),
                 "newsletter": re.compile(r"\d+"), "broadcast": re.compile(r"[\w.]+")}
_PERSON_SERVERS = ("c.us", "s.whatsapp.net")


class InvalidChatId(InvalidInput):
    """The value is not a phone number or a JID wa-hub can address (400)."""


def normalize(raw: object, *, field: str = "chatId", default_country_code: str | None = None,
              allow_status_broadcast: bool = False) -> str:
    """Return the canonical chat id for ``raw``.

    People become ``<digits>@c.us``; ``@g.us``/``@lid``/``@newsletter``/``@broadcast`` ids are
    returned unchanged (after trimming), ``status@broadcast`` only with ``allow_status_broadcast``.
    ``default_country_code`` (digits, e.g. ``"20"``) completes a national number written with a
    leading 0. Raises :class:`InvalidChatId` naming ``field``.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidChatId(f"{field} is required: a phone number or a WhatsApp chat id")
    if not isinstance(raw, str):
        raise InvalidChatId(f"{field} must be a string: a phone number or a WhatsApp chat id")
    value = raw.strip()
    if "@" in value:
        user, _, server = value.partition("@")
        server = server.lower()
        if server in _PERSON_SERVERS:
            user = user.split(":", 1)[0]  # device suffix of a whatsmeow JID, e.g. 2010...:12
            return _phone_digits(user, raw, field) + "@c.us"
        pattern = _KEPT_SERVERS.get(server)
        user = _ascii_digits(user)
        if server == "broadcast" and user.strip() == "status" and not allow_status_broadcast:
            raise InvalidChatId(f"{field} status@broadcast would post a Status on the linked phone; it is refused "
                                "unless ALLOW_STATUS_BROADCAST=true")
        if pattern is not None and pattern.fullmatch(user) and user.isascii():
            return f"{user}@{server}"
        raise InvalidChatId(f"{field} {raw!r} is not a valid WhatsApp chat id")
    return _number(value, raw, field, default_country_code) + "@c.us"


def _ascii_digits(value: str) -> str:
    """Any Unicode decimal digit (Arabic-Indic ``٢٠١``, full-width ``２０１``…) as its ASCII digit."""
    if value.isascii():  # nothing to convert (the usual case)
        return value
    return "".join(str(unicodedata.decimal(c)) if not c.isascii() and unicodedata.decimal(c, None) is not None
                   else c for c in value)


def _phone_digits(value: str, raw: str, field: str) -> str:
    stripped = _PHONE_DECORATION.sub("", _ascii_digits(value))
    if stripped.startswith("+"):
        stripped = stripped[1:]
    if not _DIGITS.fullmatch(stripped) or not _MIN_DIGITS <= len(stripped) <= _MAX_DIGITS:
        raise InvalidChatId(
            f"{field} {raw!r} is not a phone number in international form "
            f"({_MIN_DIGITS}-{_MAX_DIGITS} digits with country code) or a WhatsApp chat id"
        )
    return stripped


def _number(value: str, raw: str, field: str, default_country_code: str | None) -> str:
    """Canonical digits of a phone number as written by a person (see the module docstring)."""
    compact = _PHONE_DECORATION.sub("", _ascii_digits(value))
    international = compact.startswith("+") or compact.startswith("00")
    if compact.startswith("00"):
        compact = compact[2:]
    elif not international and compact.startswith("0") and _DIGITS.fullmatch(compact):
        if default_country_code is None:
            raise InvalidChatId(
                f"{field} {raw!r} is a national number (leading 0) without a country code: write it in "
                "international form, e.g. 201000000001 or +20 100 000 0001 for 0100 000 0001 in Egypt")
        if not _DIGITS.fullmatch(default_country_code) or compact[1:].startswith("0"):
            raise InvalidChatId(f"{field} {raw!r} cannot be completed with the country code "
                                f"{default_country_code!r}")
        compact = default_country_code + compact[1:]
    digits = _phone_digits(compact, raw, field)
    if digits.startswith("0"):
        raise InvalidChatId(f"{field} {raw!r} is not a phone number: a country code never starts with 0")
    cc = country_code(digits)
    if digits[len(cc):].startswith("0") and cc not in ZERO_IS_PART_OF_NUMBER:
        digits = _phone_digits(cc + digits[len(cc) + 1:], raw, field)
    return digits


# E.164 country codes are prefix-free: 1 and 7 are one digit, these are two, every other is three.
_TWO_DIGIT_CODES = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 64 65 66 "
    "81 82 84 86 90 91 92 93 94 95 98".split())
# Countries whose national significant numbers begin with 0 (ITU national numbering plans):
# Italy, San Marino, Vatican, Côte d'Ivoire (2021), Benin (2024), Gabon, Republic of the Congo.
ZERO_IS_PART_OF_NUMBER = frozenset({"39", "378", "379", "225", "229", "241", "242"})


def country_code(digits: str) -> str:
    """The E.164 country code at the start of an international number's digits."""
    if digits[:1] in ("1", "7"):
        return digits[:1]
    if digits[:2] in _TWO_DIGIT_CODES:
        return digits[:2]
    return digits[:3]


def to_whatsmeow(chat_id: str) -> str:
    """Map a canonical id to whatsmeow's server form (``@c.us`` → ``@s.whatsapp.net``)."""
    if chat_id.endswith("@c.us"):
        return chat_id[: -len("@c.us")] + "@s.whatsapp.net"
    return chat_id


def from_whatsmeow(jid: str) -> str:
    """Map a whatsmeow JID string to wa-hub's external form (drops the device suffix)."""
    user, _, server = jid.partition("@")
    if server == "s.whatsapp.net":
        return user.split(":", 1)[0] + "@c.us"
    if server == "lid":
        return user.split(":", 1)[0] + "@lid"
    return jid


def phone_number(chat_id: str) -> str | None:
    """The bare digits of a person's chat id, or None for groups, lids and channels."""
    if chat_id.endswith("@c.us"):
        return chat_id[: -len("@c.us")]
    return None


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def instance_id_from_name(name: str) -> str:
    """Sanitise an instance name into its id (``WASP-shop.myshopify.com`` → ``WASP-shop_myshopify_com``).

    Every character other than ASCII letters, digits, ``_`` and ``-`` becomes ``_``.
    Raises :class:`InvalidInput` for an empty name or one longer than 100 characters.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name is required")
    if len(name) > 100:
        raise InvalidInput("name must be at most 100 characters")
    return _NAME_UNSAFE.sub("_", name.strip())
