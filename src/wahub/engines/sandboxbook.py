"""The sandbox directory's actions, one small function each (see :mod:`wahub.engines.sandboxdirectory`).

Each takes the world's directories, the calling phone's book and the parsed arguments, and answers
in :mod:`wahub.engines.directory`'s neutral shapes. They change only the simulated world.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wahub.engines.directory import DirectoryNotFound, DirectoryRefused, DirectoryUnsupported
from wahub.engines.sandboxdirectory import (
    Book,
    ChatState,
    Group,
    SandboxDirectories,
    contact_answer,
    find_group,
    group_answer,
)

Handler = Callable[[SandboxDirectories, Book, dict[str, Any]], Any]
ACTIONS: dict[str, Handler] = {}


def action(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler under one or more action names."""
    def register(fn: Handler) -> Handler:
        for name in names:
            ACTIONS[name] = fn
        return fn
    return register


def _chat_answer(book: Book, chat: ChatState) -> dict[str, Any]:
    name = chat.name
    if name is None and chat.chat_id in book.contacts:
        info = book.contacts[chat.chat_id]
        name = info.get("name") or info.get("pushName")
    return {"id": chat.chat_id, "name": name, "isGroup": chat.chat_id.endswith("@g.us"),
            "unreadCount": chat.unread, "timestamp": chat.timestamp, "archived": chat.archived,
            "pinned": chat.pinned, "mutedUntil": chat.muted_until, "readOnly": False}


def _chat(book: Book, chat_id: str) -> ChatState:
    chat = book.chats.get(chat_id)
    if chat is None:
        raise DirectoryNotFound(f"no chat {chat_id} on this account")
    return chat


def _message(book: Book, message_id: str) -> dict[str, Any]:
    found = book.messages.get(message_id)
    if found is None:
        raise DirectoryNotFound(f"no message {message_id} on this account")
    return dict(found)


# -- reads -------------------------------------------------------------------------------------
@action("get-chats")
def get_chats(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    chats = sorted(book.chats.values(), key=lambda c: (not c.pinned, -c.timestamp))
    offset = a.get("offset") or 0
    end = None if a.get("limit") is None else offset + a["limit"]
    return [_chat_answer(book, c) for c in chats[offset:end]]


@action("get-chat-by-id")
def get_chat(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    return _chat_answer(book, _chat(book, a["chat_id"]))


@action("fetch-messages")
def fetch_messages(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    chat = _chat(book, a["chat_id"])
    found = [book.messages[m] for m in chat.message_ids if m in book.messages]
    if a.get("from_me") is not None:
        found = [m for m in found if m["fromMe"] == a["from_me"]]
    found = found[:len(found) - (a.get("offset") or 0)]
    limit = a.get("limit") or 50
    return [dict(m) for m in found[-limit:]]


@action("get-message-by-id")
def get_message(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    return _message(book, a["message_id"])


@action("get-message-info-by-id")
def message_info(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    msg = _message(book, a["message_id"])
    return {"id": msg["id"], "ack": msg["ack"], "fromMe": msg["fromMe"], "timestamp": msg["timestamp"]}


@action("search-messages")
def search(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    query = a["query"].casefold()
    return [dict(m) for m in book.messages.values() if query in (m["body"] or "").casefold()][-100:]


@action("get-reactions")
def reactions(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    _message(book, a["message_id"])
    return list(book.reactions.get(a["message_id"], {}).values())


@action("get-pinned-messages")
def pinned(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    _chat(book, a["chat_id"])
    return []  # the sandbox pins no messages (pin-message is not simulated)


@action("get-contacts")
def contacts(_d: SandboxDirectories, book: Book, _a: dict[str, Any]) -> list[dict[str, Any]]:
    return [contact_answer(book, jid) for jid in sorted(book.contacts)]


@action("get-contact-by-id")
def contact(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    return contact_answer(book, a["contact_id"])


@action("get-contact-about-info")
def about(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    jid = a["contact_id"]
    return {"id": jid, "about": book.about if jid == book.me else None if jid in book.unregistered else
            "Hey there! I am using WhatsApp."}


@action("get-common-groups")
def common_groups(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[str]:
    return [g.group_id for g in d.groups.values() if book.me in g.roles and a["contact_id"] in g.roles]


@action("get-blocked-contacts")
def blocked(_d: SandboxDirectories, book: Book, _a: dict[str, Any]) -> list[str]:
    return sorted(book.blocked)


@action("get-profile-pic-url")
def profile_picture(_d: SandboxDirectories, _book: Book, _a: dict[str, Any]) -> None:
    return None  # sandbox users have no profile pictures


@action("get-number-id")
def number_id(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    typed = a["number"] + "@c.us"
    known = book.aliases.get(typed, typed)
    return {"query": a["number"], "jid": None if known in book.unregistered else known}


@action("get-lid")
def lids(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in a["contact_ids"]:
        other = book.pairs.get(c)
        out.append({"id": c, "lid": c, "phone": other} if c.endswith("@lid") else {"id": c, "lid": other, "phone": c})
    return out


@action("get-disappearing-messages")
def disappearing(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    chat = book.chats.get(a["chat_id"])
    return {"chatId": a["chat_id"], "duration": chat.disappearing_s if chat else 0}


# -- chat and contact settings ---------------------------------------------------------------------
@action("archive-chat", "unarchive-chat", "pin-chat", "unpin-chat", "mute-chat", "unmute-chat", "mark-chat-unread",
        "delete-chat-by-id", "clear-chat-messages", "sync-chat-history", "set-disappearing-messages")
def chat_setting(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    name = a["__action"]
    chat = book.chats.get(a["chat_id"])
    if chat is None:
        if name in ("unarchive-chat", "unpin-chat", "unmute-chat", "delete-chat-by-id", "clear-chat-messages",
                    "sync-chat-history"):
            raise DirectoryNotFound(f"no chat {a['chat_id']} on this account")
        chat = d._chat(book, a["chat_id"], 0)
    if name in ("archive-chat", "unarchive-chat"):
        chat.archived = name == "archive-chat"
    elif name in ("pin-chat", "unpin-chat"):
        if name == "pin-chat" and not chat.pinned and sum(c.pinned for c in book.chats.values()) >= 3:
            raise DirectoryRefused("at most 3 chats can be pinned")
        chat.pinned = name == "pin-chat"
    elif name == "mute-chat":
        chat.muted_until = a["until"]
    elif name == "unmute-chat":
        chat.muted_until = None
    elif name == "mark-chat-unread":
        chat.unread = max(chat.unread, 1)
    elif name == "delete-chat-by-id":
        del book.chats[chat.chat_id]
    elif name == "clear-chat-messages":
        for mid in chat.message_ids:
            book.messages.pop(mid, None)
        chat.message_ids.clear()
    elif name == "set-disappearing-messages":
        chat.disappearing_s = a["duration"]
    return {"chatId": a["chat_id"]}


@action("block-contact", "unblock-contact")
def block(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    if a["__action"] == "block-contact":
        book.blocked.add(a["contact_id"])
    else:
        book.blocked.discard(a["contact_id"])
    return {"contactId": a["contact_id"], "isBlocked": a["contact_id"] in book.blocked}


@action("upsert-contact", "delete-contact")
def save_contact(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    jid = a["number"] + "@c.us"
    info = book.contacts.setdefault(jid, {"name": None, "pushName": None})
    info["name"] = " ".join(p for p in (a.get("first_name"), a.get("last_name")) if p) or None
    return contact_answer(book, jid)


@action("set-display-name", "set-status")
def own_profile(_d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    if a["__action"] == "set-display-name":
        book.push_name = a["display_name"]
        return {"displayName": book.push_name}
    book.about = a["status"]
    return {"status": book.about}


# -- groups ------------------------------------------------------------------------------------------
@action("get-group-info", "get-group-participants")
def group_info(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> Any:
    answer = group_answer(find_group(d, book, a["group_id"]))
    return answer["participants"] if a["__action"] == "get-group-participants" else answer


@action("create-group")
def create_group(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    now = d.clock.now_ms()
    group = Group(d.new_group_id(), a["subject"], book.me, now)
    group.roles[book.me] = "superadmin"
    for person in a["participants"]:
        if person not in book.unregistered and person != book.me:
            group.roles[person] = "member"
    group.invite_code = d.new_invite_code(group.group_id)
    d.groups[group.group_id] = group
    chat = d._chat(book, group.group_id, now)
    chat.name = group.subject
    return group_answer(group)


@action("add-group-participant", "remove-group-participant", "promote-group-participant",
        "demote-group-participant")
def participants(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    group = find_group(d, book, a["group_id"], admin=True)
    person, name = a["participant"], a["__action"]
    if name == "add-group-participant":
        if person in book.unregistered:
            raise DirectoryRefused(f"{person} is not on WhatsApp")
        group.roles.setdefault(person, "member")
    elif person not in group.roles:
        raise DirectoryNotFound(f"{person} is not in {group.group_id}")
    elif group.roles[person] == "superadmin":
        raise DirectoryRefused("the group's creator cannot be removed or demoted")
    elif name == "remove-group-participant":
        del group.roles[person]
    else:
        group.roles[person] = "admin" if name == "promote-group-participant" else "member"
    return group_answer(group)


@action("update-group-info")
def update_group(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    group = find_group(d, book, a["group_id"], admin=False)
    if group.locked and group.roles[book.me] == "member":
        raise DirectoryRefused(f"only admins may edit the info of {group.group_id}")
    if a.get("picture_url") is not None:
        raise DirectoryUnsupported("setting a group picture from a URL is not supported")
    if a.get("subject") is not None:
        if not a["subject"].strip() or len(a["subject"]) > 100:
            raise DirectoryRefused("subject must be 1 to 100 characters")
        group.subject = a["subject"]
        book.chats[group.group_id].name = group.subject if group.group_id in book.chats else None
    if a.get("description") is not None:
        group.description = a["description"]
    return group_answer(group)


@action("update-group-settings")
def group_settings(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    group = find_group(d, book, a["group_id"], admin=True)
    group.announce = a["admins_only"]
    return group_answer(group)


@action("get-group-member-requests")
def member_requests(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    group = find_group(d, book, a["group_id"], admin=True)
    return [{"id": r} for r in group.requests]


@action("accept-group-member-requests", "deny-group-member-requests")
def answer_requests(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> list[dict[str, Any]]:
    group = find_group(d, book, a["group_id"], admin=True)
    chosen = a.get("requesters") or list(group.requests)
    done = [r for r in chosen if r in group.requests]
    for r in done:
        group.requests.remove(r)
        if a["__action"] == "accept-group-member-requests":
            group.roles.setdefault(r, "member")
    return [{"id": r, "status": "accepted" if a["__action"].startswith("accept") else "denied"} for r in done]


@action("get-invite-code", "revoke-invite")
def invite_code(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    group = find_group(d, book, a["group_id"], admin=True)
    if a["__action"] == "revoke-invite":
        group.invite_code = d.new_invite_code(group.group_id)
    return {"groupId": group.group_id, "inviteCode": group.invite_code,
            "inviteLink": f"https://chat.whatsapp.com/{group.invite_code}"}


def _by_code(d: SandboxDirectories, code: str) -> Group:
    code = code.rsplit("/", 1)[-1]
    found = next((g for g in d.groups.values() if g.invite_code == code), None)
    if found is None:
        raise DirectoryNotFound("this invite code is not valid (revoked or never issued)")
    return found


@action("get-invite-info")
def invite_info(d: SandboxDirectories, _book: Book, a: dict[str, Any]) -> dict[str, Any]:
    return group_answer(_by_code(d, a["code"]))


@action("accept-invite", "accept-group-invite")
def accept_invite(d: SandboxDirectories, book: Book, a: dict[str, Any]) -> dict[str, Any]:
    group = _by_code(d, a["code"])
    group.roles.setdefault(book.me, "member")
    d._chat(book, group.group_id, d.clock.now_ms()).name = group.subject
    return {"groupId": group.group_id}

