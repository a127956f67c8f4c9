"""The sandbox's address book: chats, contacts, messages and groups of each simulated phone.

Seeded from traffic: every message the sandbox delivered or injected makes its chat, its sender
a contact and the message readable (``fetch-messages``, ``get-message-by-id``); reactions, edits
and deletes change what is read back. Groups are created through ``create-group`` and live in the
world, so another sandbox instance can join one by its invite code. Knobs (sandbox faults):
``resolves_to`` (``chatId`` → ``to``: WhatsApp knows the number under another id, e.g. a Brazilian
number without its ninth digit) and ``unregistered`` (the number is not on WhatsApp).

Answers follow :mod:`wahub.engines.directory`'s neutral shapes. The book lives in memory (a
restarted hub starts with an empty one; linked sessions persist as before).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wahub.domain import chatid
from wahub.domain.clock import Clock
from wahub.engines import base
from wahub.engines.directory import Directory, DirectoryNotFound, DirectoryRefused, DirectoryUnsupported

MAX_MESSAGES = 10_000  # per phone; the oldest are forgotten first
DEFAULT_ABOUT = "Hey there! I am using WhatsApp."


@dataclass
class ChatState:
    """One chat of a simulated phone."""

    chat_id: str
    name: str | None = None
    timestamp: int = 0
    unread: int = 0
    archived: bool = False
    pinned: bool = False
    muted_until: int | None = None
    disappearing_s: int = 0
    message_ids: list[str] = field(default_factory=list)


@dataclass
class Group:
    """A simulated group (shared by every phone of the world)."""

    group_id: str
    subject: str
    owner: str
    creation: int
    description: str = ""
    announce: bool = False
    locked: bool = False
    invite_code: str = ""
    roles: dict[str, str] = field(default_factory=dict)  # member id -> "member" | "admin" | "superadmin"
    requests: list[str] = field(default_factory=list)


@dataclass
class Book:
    """What one simulated phone knows."""

    me: str = ""
    push_name: str = "Sandbox"
    about: str = DEFAULT_ABOUT
    chats: dict[str, ChatState] = field(default_factory=dict)
    messages: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    reactions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # target -> sender -> reaction
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)  # typed chat id -> the id WhatsApp knows
    unregistered: set[str] = field(default_factory=set)
    pairs: dict[str, str] = field(default_factory=dict)  # lid <-> phone, both directions, from inbound traffic


class SandboxDirectories:
    """Every phone's book and the world's groups; fed by the sandbox world and engines."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.books: dict[str, Book] = {}
        self.groups: dict[str, Group] = {}
        self._seq = 0

    def book(self, instance_id: str) -> Book:
        """The book of ``instance_id`` (created on first use)."""
        return self.books.setdefault(instance_id, Book())

    def forget(self, instance_id: str) -> None:
        """Drop a deleted instance's book."""
        self.books.pop(instance_id, None)

    def alias(self, instance_id: str, typed: str, known: str) -> None:
        """Knob: WhatsApp knows ``typed`` as ``known`` (both canonical chat ids)."""
        self.book(instance_id).aliases[typed] = known

    def observe(self, instance_id: str, event: base.EngineEvent) -> None:
        """Learn from an event the engine hands to the runtime (inbound traffic)."""
        book = self.book(instance_id)
        if isinstance(event, base.Ready):
            book.me = f"{event.phone}@c.us" if event.phone else ""
            book.push_name = event.push_name or book.push_name
        elif isinstance(event, base.InboundMessage):
            self._contact(book, event.sender, event.push_name)
            if event.sender_alt and event.sender.endswith("@lid") != event.sender_alt.endswith("@lid"):
                book.pairs[event.sender], book.pairs[event.sender_alt] = event.sender_alt, event.sender
            chat = self._chat(book, event.chat_id, event.timestamp)
            if not event.from_me:
                chat.unread += 1
            self._keep(book, chat, {"id": event.message_id, "chatId": event.chat_id, "from": event.sender,
                                    "fromMe": event.from_me, "type": event.kind, "body": event.text,
                                    "timestamp": event.timestamp, "hasMedia": event.has_media, "ack": None})
        elif isinstance(event, base.Reaction):
            target = book.reactions.setdefault(event.target_message_id, {})
            if event.emoji:
                target[event.sender] = {"id": event.message_id, "senderId": event.sender, "reaction": event.emoji,
                                        "timestamp": event.timestamp}
            else:
                target.pop(event.sender, None)
        elif isinstance(event, base.MessageEdit):
            if event.original_message_id in book.messages:
                book.messages[event.original_message_id]["body"] = event.text
        elif isinstance(event, base.MessageRevoke):
            if event.original_message_id in book.messages:
                book.messages[event.original_message_id].update(type="revoked", body="", hasMedia=False)
        elif isinstance(event, base.Receipt):
            for mid in event.message_ids:
                if mid in book.messages:
                    book.messages[mid]["ack"] = event.ack

    def sent(self, instance_id: str, message_id: str, chat_id: str, kind: str, body: str, at: int) -> None:
        """Learn a message the phone sent."""
        book = self.book(instance_id)
        chat = self._chat(book, chat_id, at)
        chat.unread = 0
        self._keep(book, chat, {"id": message_id, "chatId": chat_id, "from": book.me, "fromMe": True,
                                "type": kind, "body": body, "timestamp": at, "hasMedia": False, "ack": "server"})

    def _chat(self, book: Book, chat_id: str, at: int) -> ChatState:
        chat = book.chats.get(chat_id)
        if chat is None:
            chat = book.chats[chat_id] = ChatState(chat_id)
            if chat_id.endswith("@c.us") or chat_id.endswith("@lid"):
                self._contact(book, chat_id, None)
        chat.timestamp = max(chat.timestamp, at)
        return chat

    def _contact(self, book: Book, jid: str, push_name: str | None) -> None:
        if not (jid.endswith("@c.us") or jid.endswith("@lid")):
            return
        contact = book.contacts.setdefault(jid, {"name": None, "pushName": None})
        if push_name:
            contact["pushName"] = push_name

    def _keep(self, book: Book, chat: ChatState, message: dict[str, Any]) -> None:
        if message["id"] not in book.messages:
            chat.message_ids.append(message["id"])
        book.messages[message["id"]] = message
        while len(book.messages) > MAX_MESSAGES:
            old, gone = book.messages.popitem(last=False)
            owner = book.chats.get(gone["chatId"])
            if owner is not None and old in owner.message_ids:
                owner.message_ids.remove(old)

    def new_group_id(self) -> str:
        """A fresh ``…@g.us`` id."""
        self._seq += 1
        return f"1203630{self.clock.now_ms() % 10**9:09d}{self._seq:04d}@g.us"

    def new_invite_code(self, group_id: str) -> str:
        """A fresh invite code for ``group_id``."""
        self._seq += 1
        return hashlib.sha256(f"{group_id}:{self._seq}".encode()).hexdigest()[:22]


class SandboxDirectory(Directory):
    """The directory of one sandbox engine (see the module docstring); :mod:`sandboxbook` holds the actions."""

    engine_name = "the sandbox engine"

    def __init__(self, directories: SandboxDirectories, instance_id: str) -> None:
        from wahub.engines.sandboxbook import ACTIONS

        self.directories = directories
        self.instance_id = instance_id
        self._handlers = ACTIONS
        self.actions = frozenset(ACTIONS)

    async def call(self, action: str, args: Mapping[str, Any]) -> Any:
        handler = self._handlers.get(action)
        if handler is None:
            raise DirectoryUnsupported(self.why_not(action))
        return handler(self.directories, self.directories.book(self.instance_id), {**args, "__action": action})


def contact_answer(book: Book, jid: str) -> dict[str, Any]:
    """A contact in the neutral shape."""
    info = book.contacts.get(jid, {})
    return {"id": jid, "number": chatid.phone_number(jid), "name": info.get("name"),
            "pushName": info.get("pushName"), "isBusiness": False, "isMe": jid == book.me,
            "isMyContact": info.get("name") is not None, "isBlocked": jid in book.blocked,
            "isWAContact": jid not in book.unregistered, "lid": None}


def group_answer(group: Group) -> dict[str, Any]:
    """A group in the neutral shape."""
    return {"id": group.group_id, "subject": group.subject, "description": group.description,
            "owner": group.owner, "creation": group.creation, "announce": group.announce, "locked": group.locked,
            "participants": [{"id": m, "isAdmin": r in ("admin", "superadmin"), "isSuperAdmin": r == "superadmin"}
                             for m, r in group.roles.items()]}


def find_group(dirs: SandboxDirectories, book: Book, group_id: str, *, admin: bool = False) -> Group:
    """A group the phone belongs to (as admin when asked); DirectoryNotFound / DirectoryRefused otherwise."""
    group = dirs.groups.get(group_id)
    if group is None or book.me not in group.roles:
        raise DirectoryNotFound(f"this account is not in a group {group_id}")
    if admin and group.roles[book.me] == "member":
        raise DirectoryRefused(f"this account is not an admin of {group_id}")
    return group

