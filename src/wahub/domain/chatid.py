"""Chat ids (JIDs): parse what clients send into wa-hub's canonical external form.

Accepted (DESIGN §5): ``+20 100 000 0001``, ``201000000001``, ``201000000001@c.us``,
``201000000001@s.whatsapp.net`` → ``201000000001@c.us``. Group (``@g.us``), hidden-number
(``@lid``), channel (``@newsletter``) and broadcast ids are kept as they are. Country digits are
never added or stripped by rule. Anything else raises :class:`InvalidChatId`.
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


def normalize(raw: object, *, field: str = "chatId") -> str:
    """Return the canonical chat id for ``raw``.

    People become ``<digits>@c.us``; ``@g.us``/``@lid``/``@newsletter``/``@broadcast`` ids are
    returned unchanged (after trimming). Raises :class:`InvalidChatId` naming ``field``.
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
        if pattern is not None and pattern.fullmatch(user) and user.isascii():
            return f"{user}@{server}"
        raise InvalidChatId(f"{field} {raw!r} is not a valid WhatsApp chat id")
    return _phone_digits(value, raw, field) + "@c.us"


def _ascii_digits(value: str) -> str:
    """Any Unicode decimal digit (Arabic-Indic ``٢٠١``, full-width ``２０１``…) as its ASCII digit."""
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
