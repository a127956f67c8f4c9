"""The directory actions: reads, chat settings and groups, named and shaped as the WaAPI SDK sends them.

Each :class:`Action` is one ``POST /instances/{id}/client/action/<name>`` route: the body fields
the official SDK (PyPI ``waapi`` 0.1.2) sends, their types, and which are required. :func:`parse`
turns a request body into the checked arguments of the engine call (chat ids canonical, numbers as
digits), raising :class:`~wahub.domain.errors.InvalidInput` naming the field; unknown fields are
ignored, as the SDK may send newer ones.

Kinds: ``read`` (asks the engine, changes nothing), ``chat`` (a chat or contact setting),
``group`` (group management), ``local`` (answered without the engine: number formatting).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wahub.domain import chatid
from wahub.domain.errors import InvalidInput

#: Field types: ``chat`` any chat id; ``person`` a user (``@c.us``/``@lid``); ``group`` a ``@g.us`` id;
#: ``people`` a non-empty list of users; ``ids`` a non-empty list of user ids; ``number`` a phone number
#: (→ digits); ``text``/``code``/``message`` strings; ``int``; ``bool``.
TYPES = ("chat", "person", "group", "people", "ids", "number", "text", "code", "message", "int", "bool")
MAX_LIST = 256  # participants or ids in one call (WhatsApp groups hold at most 1 024 members)
MAX_PAGE = 1_000


@dataclass(frozen=True)
class Field:
    """One body field: its API name, the argument it becomes, its type (see :data:`TYPES`)."""

    api: str
    arg: str
    type: str
    required: bool = False


@dataclass(frozen=True)
class Action:
    """One directory action route."""

    name: str
    kind: str
    summary: str
    fields: tuple[Field, ...] = ()


def _f(api: str, type_: str, required: bool = False, arg: str | None = None) -> Field:
    return Field(api, arg or _snake(api), type_, required)


def _snake(api: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in api)


CHAT = _f("chatId", "chat", True, "chat_id")
GROUP = _f("chatId", "group", True, "group_id")
CONTACT = _f("contactId", "person", True, "contact_id")
PARTICIPANT = _f("participant", "person", True)
INVITE = _f("inviteCode", "code", True, "code")
MESSAGE = _f("messageId", "message", True, "message_id")

ACTIONS: dict[str, Action] = {a.name: a for a in (
    # reads
    Action("get-chats", "read", "Chats of the account, newest first", (_f("offset", "int"), _f("limit", "int"))),
    Action("get-chat-by-id", "read", "One chat", (CHAT,)),
    Action("fetch-messages", "read", "Messages of a chat this instance has seen or sent, newest last",
           (CHAT, _f("limit", "int"), _f("offset", "int"), _f("fromMe", "bool"), _f("includeMedia", "bool"))),
    Action("get-message-by-id", "read", "One message this instance has seen or sent",
           (MESSAGE, _f("includeMedia", "bool"))),
    Action("get-message-info-by-id", "read", "Delivery state of a message", (MESSAGE,)),
    Action("search-messages", "read", "Messages whose text contains the query",
           (_f("query", "text", True), _f("options", "text"))),
    Action("get-reactions", "read", "Reactions on a message", (_f("messageId", "message", True),)),
    Action("get-pinned-messages", "read", "Pinned messages of a chat", (CHAT,)),
    Action("get-contacts", "read", "Contacts known to the account"),
    Action("get-contact-by-id", "read", "One contact", (CONTACT,)),
    Action("get-contact-about-info", "read", "A contact's About text", (CONTACT,)),
    Action("get-common-groups", "read", "Groups shared with a contact", (CONTACT,)),
    Action("get-blocked-contacts", "read", "Blocked contacts"),
    Action("get-profile-pic-url", "read", "Profile picture URL (null when hidden or none)", (CONTACT,)),
    Action("get-number-id", "read", "The WhatsApp id of a phone number (null when not on WhatsApp)",
           (_f("number", "number", True),)),
    Action("get-lid", "read", "Hidden-number id (lid) and phone of users", (_f("contactIds", "ids", True),)),
    Action("get-group-info", "read", "Group subject, description, settings and participants", (GROUP,)),
    Action("get-group-participants", "read", "Group participants with their roles", (GROUP,)),
    Action("get-group-member-requests", "read", "Pending requests to join a group", (GROUP,)),
    Action("get-invite-info", "read", "The group an invite code opens", (INVITE,)),
    Action("get-invite-code", "read", "The invite code of a group (admin only)", (GROUP,)),
    Action("get-disappearing-messages", "read", "Disappearing-messages timer of a chat (s, 0 = off)", (CHAT,)),
    # answered without the engine
    Action("get-formatted-number", "local", "A number as +<country code> <national number>",
           (_f("number", "number", True),)),
    Action("get-country-code", "local", "The country calling code of a number", (_f("number", "number", True),)),
    Action("get-disappearing-durations", "local", "Disappearing-message timers WhatsApp offers (s)"),
    # chat and contact settings
    Action("archive-chat", "chat", "Archive a chat", (CHAT,)),
    Action("unarchive-chat", "chat", "Unarchive a chat", (CHAT,)),
    Action("pin-chat", "chat", "Pin a chat", (CHAT,)),
    Action("unpin-chat", "chat", "Unpin a chat", (CHAT,)),
    Action("mute-chat", "chat", "Mute a chat (until unmuteDate, else for ever)", (CHAT, _f("unmuteDate", "text"))),
    Action("unmute-chat", "chat", "Unmute a chat", (CHAT,)),
    Action("mark-chat-unread", "chat", "Mark a chat unread", (CHAT,)),
    Action("delete-chat-by-id", "chat", "Delete a chat from the account's list", (CHAT,)),
    Action("clear-chat-messages", "chat", "Clear the messages of a chat", (CHAT,)),
    Action("sync-chat-history", "chat", "Ask the phone for a chat's history", (CHAT,)),
    Action("set-disappearing-messages", "chat", "Set a chat's disappearing-messages timer (s)",
           (CHAT, _f("duration", "int", True))),
    Action("block-contact", "chat", "Block a contact", (CONTACT,)),
    Action("unblock-contact", "chat", "Unblock a contact", (CONTACT,)),
    Action("upsert-contact", "chat", "Save a contact's name in the account's address book",
           (_f("phoneNumber", "number", True, "number"), _f("firstName", "text", True),
            _f("lastName", "text", True), _f("syncToAddressbook", "bool"))),
    Action("delete-contact", "chat", "Remove a saved contact name", (_f("phoneNumber", "number", True, "number"),)),
    Action("set-display-name", "chat", "Set the account's display (push) name", (_f("displayName", "text", True),)),
    Action("set-status", "chat", "Set the account's About text", (_f("status", "text", True),)),
    # groups
    Action("create-group", "group", "Create a group",
           (_f("groupName", "text", True, "subject"), _f("groupParticipants", "people", True, "participants"))),
    Action("add-group-participant", "group", "Add a participant", (GROUP, PARTICIPANT)),
    Action("remove-group-participant", "group", "Remove a participant", (GROUP, PARTICIPANT)),
    Action("promote-group-participant", "group", "Make a participant admin", (GROUP, PARTICIPANT)),
    Action("demote-group-participant", "group", "Take admin rights from a participant", (GROUP, PARTICIPANT)),
    Action("update-group-info", "group", "Change a group's subject and/or description",
           (GROUP, _f("subject", "text"), _f("description", "text"), _f("pictureUrl", "text"))),
    Action("update-group-settings", "group", "Only admins may send (messageAdminOnly)",
           (GROUP, _f("messageAdminOnly", "bool", True, "admins_only"))),
    Action("accept-group-member-requests", "group", "Approve requests to join",
           (GROUP, _f("requesterIds", "ids", False, "requesters"))),
    Action("deny-group-member-requests", "group", "Deny requests to join",
           (GROUP, _f("requesterIds", "ids", False, "requesters"))),
    Action("revoke-invite", "group", "Revoke a group's invite code; answers the new one", (GROUP,)),
    Action("accept-invite", "group", "Join a group by invite code", (INVITE,)),
    Action("accept-group-invite", "group", "Join a group by invite code (inviteCode)",
           (_f("inviteCode", "code", True, "code"), _f("inviteData", "text"))),
)}

DISAPPEARING_DURATIONS = (0, 86_400, 604_800, 7_776_000)
"""Timers WhatsApp offers for disappearing messages (s): off, 24 hours, 7 days, 90 days."""


def parse(action: Action, body: Mapping[str, Any], *, default_country_code: str | None = None) -> dict[str, Any]:
    """The engine call's arguments from a request body; raises InvalidInput naming the field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("body must be a JSON object")
    args: dict[str, Any] = {}
    for field in action.fields:
        value = body.get(field.api)
        if value is None:
            if field.required:
                raise InvalidInput(f"{field.api} is required")
            args[field.arg] = None
            continue
        args[field.arg] = _value(field, value, default_country_code)
    if action.name == "mute-chat":
        args["until"] = mute_until(args.pop("unmute_date"))
    if action.name == "update-group-info" and args["subject"] is None and args["description"] is None \
            and args["picture_url"] is None:
        raise InvalidInput("subject, description or pictureUrl is required")
    return args


def _value(field: Field, value: Any, cc: str | None) -> Any:
    name, kind = field.api, field.type
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidInput(f"{name} must be true or false")
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**9:
            raise InvalidInput(f"{name} must be a whole number from 0")
        return min(value, MAX_PAGE) if name == "limit" else value
    if kind in ("text", "code", "message"):
        if isinstance(value, (dict, list)) and name in ("options", "inviteData"):
            return value
        if not isinstance(value, str) or (kind != "text" and not value.strip()) or len(value) > 4_096:
            raise InvalidInput(f"{name} must be a non-empty string of at most 4096 characters"
                               if kind != "text" else f"{name} must be a string of at most 4096 characters")
        return value.strip() if kind != "text" else value
    if kind == "number":
        return number_digits(value, name, cc)
    if kind in ("people", "ids"):
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise InvalidInput(f"{name} must be a non-empty list of at most {MAX_LIST} ids")
        people = [person(v, f"{name}[{i}]", cc) for i, v in enumerate(value)]
        return list(dict.fromkeys(people))
    if kind == "person":
        return person(value, name, cc)
    chat = chatid.normalize(value, field=name, default_country_code=cc)
    if kind == "group" and not chat.endswith("@g.us"):
        raise InvalidInput(f"{name} must be a group id (…@g.us)")
    return chat


def mute_until(value: str | None) -> int:
    """``unmuteDate`` as epoch ms (-1: for ever): ISO 8601, or epoch seconds (or ms) as digits."""
    if value is None or not value.strip():
        return -1
    text = value.strip()
    if text.isdigit():
        n = int(text)
        return n if n >= 10**12 else n * 1000
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("unmuteDate must be an ISO 8601 date-time or epoch seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def person(value: Any, name: str, cc: str | None) -> str:
    """A user's canonical id (``@c.us`` or ``@lid``); InvalidInput naming ``name`` otherwise."""
    chat = chatid.normalize(value, field=name, default_country_code=cc)
    if not (chat.endswith("@c.us") or chat.endswith("@lid")):
        raise InvalidInput(f"{name} must be a user id or phone number, not a group or channel")
    return chat


def number_digits(value: Any, name: str, cc: str | None) -> str:
    """The international digits of a phone number written any way :func:`chatid.normalize` accepts."""
    chat = chatid.normalize(value, field=name, default_country_code=cc)
    digits = chatid.phone_number(chat)
    if digits is None:
        raise InvalidInput(f"{name} must be a phone number")
    return digits


def formatted(digits: str) -> str:
    """``+<country code> <national number>`` (e.g. ``+55 11987654321``)."""
    code = chatid.country_code(digits)
    return f"+{code} {digits[len(code):]}"

