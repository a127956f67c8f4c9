"""The worker's side of the directory: reads, contacts and groups through neonize (``directory`` command).

:func:`run` answers ``{"value": …}`` in :mod:`wahub.engines.directory`'s neutral shapes, or
``{"refused": "not_found" | "refused" | "unsupported", "message"}`` when WhatsApp (or whatsmeow)
says no; any other failure raises and becomes an engine error. :data:`UNSUPPORTED` names what
whatsmeow, as neonize exposes it, cannot do, and why. Runs on the worker's command thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from wahub.domain import chatid
from wahub.engines.whatsmeow.workerio import resolve, to_jid

_HISTORY = "whatsmeow keeps no chat list or message history, and wa-hub stores no message bodies"
_APP_STATE = "whatsmeow changes chat settings through app-state patches, which neonize does not expose"
_ADDRESS_BOOK = "saved contact names live in the phone's address book (app state), which neonize cannot write"
UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(("get-chats", "get-chat-by-id", "fetch-messages", "get-message-by-id", "get-message-info-by-id",
                     "search-messages", "get-reactions", "get-pinned-messages"), _HISTORY),
    **dict.fromkeys(("archive-chat", "unarchive-chat", "pin-chat", "unpin-chat", "mute-chat", "unmute-chat",
                     "mark-chat-unread", "delete-chat-by-id", "clear-chat-messages"), _APP_STATE),
    **dict.fromkeys(("upsert-contact", "delete-contact"), _ADDRESS_BOOK),
    "sync-chat-history": "the phone pushes history once, when the device is linked; it cannot be asked again",
    "get-disappearing-messages": "neonize cannot read a chat's disappearing-messages timer",
    "accept-group-member-requests": "neonize 0.5 cannot answer requests to join a group",
    "deny-group-member-requests": "neonize 0.5 cannot answer requests to join a group",
}

_NOT_FOUND = ("item-not-found", "not found", "404", "no such", "not-found")
_REFUSED = ("forbidden", "not-authorized", "not authorized", "403", "401", "not-acceptable", "406", "gone", "410",
            "conflict", "409")


def jid_text(jid: Any) -> str:
    """A neonize JID as wa-hub's canonical id."""
    return chatid.from_whatsmeow(f"{jid.User}@{jid.Server}")


def run(client: Any, action: str, args: dict[str, Any]) -> dict[str, Any]:
    """Carry out ``action`` with neonize ``client``; see the module docstring for the answer."""
    if action in UNSUPPORTED or action not in _HANDLERS:
        return {"refused": "unsupported", "message": UNSUPPORTED.get(action, f"whatsmeow cannot do {action}")}
    try:
        return {"value": _HANDLERS[action](client, args)}
    except _Refusal as exc:
        return {"refused": exc.kind, "message": str(exc)}
    except Exception as exc:
        text = str(exc).lower()
        if any(k in text for k in _NOT_FOUND):
            return {"refused": "not_found", "message": f"{action}: WhatsApp answered {exc}"}
        if any(k in text for k in _REFUSED):
            return {"refused": "refused", "message": f"{action}: WhatsApp refused ({exc})"}
        raise


class _Refusal(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _group(info: Any) -> dict[str, Any]:
    created = int(info.GroupCreated)
    return {"id": jid_text(info.JID), "subject": info.GroupName.Name, "description": info.GroupTopic.Topic,
            "owner": jid_text(info.OwnerJID) if info.OwnerJID.User else None,
            "creation": created * 1000 if created < 10**12 else created,
            "announce": bool(info.GroupAnnounce.IsAnnounce), "locked": bool(info.GroupLocked.isLocked),
            "participants": [{"id": jid_text(p.JID), "isAdmin": bool(p.IsAdmin or p.IsSuperAdmin),
                              "isSuperAdmin": bool(p.IsSuperAdmin)} for p in info.Participants]}


def _contact(jid: str, info: Any, me: str | None) -> dict[str, Any]:
    return {"id": jid, "number": chatid.phone_number(jid), "name": info.FullName or None,
            "pushName": info.PushName or None, "isBusiness": bool(info.BusinessName), "isMe": jid == me,
            "isMyContact": bool(info.FullName), "isBlocked": False, "isWAContact": bool(info.Found), "lid": None}


def _me(client: Any) -> str | None:
    me = getattr(client, "me", None)
    return jid_text(me.JID) if me is not None and getattr(me, "JID", None) is not None else None


def number_id(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    answers = resolve(client.is_on_whatsapp("+" + a["number"]))
    hit = next((x for x in answers if x.IsIn), None)
    return {"query": a["number"], "jid": jid_text(hit.JID) if hit is not None else None}


def profile_picture(client: Any, a: dict[str, Any]) -> str | None:
    try:
        info = client.get_profile_picture(to_jid(a["contact_id"]))
    except Exception as exc:  # hidden, none set, or not a user: WhatsApp says so with an error
        if any(k in str(exc).lower() for k in _NOT_FOUND + _REFUSED + ("hidden", "unauthorized")):
            return None
        raise
    return str(info.URL) or None


def contacts(client: Any, _a: dict[str, Any]) -> list[dict[str, Any]]:
    me = _me(client)
    return [_contact(jid_text(c.JID), c.Info, me) for c in client.contact.get_all_contacts()]


def contact(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    found = _contact(a["contact_id"], client.contact.get_contact(to_jid(a["contact_id"])), _me(client))
    blocked = {jid_text(j) for j in client.get_blocklist().JIDs}
    return {**found, "isBlocked": a["contact_id"] in blocked}


def about(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    infos = client.get_user_info(to_jid(a["contact_id"]))
    return {"id": a["contact_id"], "about": next((i.UserInfo.Status or None for i in infos), None)}


def lids(client: Any, a: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in a["contact_ids"]:
        if c.endswith("@lid"):
            pn = client.get_pn_from_lid(to_jid(c))
            out.append({"id": c, "lid": c, "phone": jid_text(pn) if pn.User else None})
        else:
            lid = client.get_lid_from_pn(to_jid(c))
            out.append({"id": c, "lid": jid_text(lid) if lid.User else None, "phone": c})
    return out


def blocked(client: Any, _a: dict[str, Any]) -> list[str]:
    return [jid_text(j) for j in client.get_blocklist().JIDs]


def block(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    from neonize.utils.enum import BlocklistAction

    on = a["__action"] == "block-contact"
    listed = client.update_blocklist(to_jid(a["contact_id"]), BlocklistAction.BLOCK if on else BlocklistAction.UNBLOCK)
    return {"contactId": a["contact_id"], "isBlocked": a["contact_id"] in {jid_text(j) for j in listed.JIDs}}


def common_groups(client: Any, a: dict[str, Any]) -> list[str]:
    return [jid_text(g.JID) for g in client.get_joined_groups()
            if any(jid_text(p.JID) == a["contact_id"] for p in g.Participants)]


def group_info(client: Any, a: dict[str, Any]) -> Any:
    group = _group(client.get_group_info(to_jid(a["group_id"])))
    return group["participants"] if a["__action"] == "get-group-participants" else group


def create_group(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    return _group(client.create_group(a["subject"], [to_jid(p) for p in a["participants"]]))


def participants(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    from neonize.utils.enum import ParticipantChange

    change = {"add-group-participant": ParticipantChange.ADD, "remove-group-participant": ParticipantChange.REMOVE,
              "promote-group-participant": ParticipantChange.PROMOTE,
              "demote-group-participant": ParticipantChange.DEMOTE}[a["__action"]]
    group = to_jid(a["group_id"])
    for p in client.update_group_participants(group, [to_jid(a["participant"])], change):
        if int(p.Error):
            raise _Refusal("refused", f"WhatsApp refused {a['__action']} for {a['participant']} (code {p.Error})")
    return _group(client.get_group_info(group))


def update_group(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    if a.get("picture_url") is not None:
        raise _Refusal("unsupported", "setting a group picture from a URL is not supported")
    group = to_jid(a["group_id"])
    if a.get("subject") is not None:
        client.set_group_name(group, a["subject"])
    if a.get("description") is not None:
        previous = client.get_group_info(group).GroupTopic.TopicID
        client.set_group_topic(group, previous, "", a["description"])
    return _group(client.get_group_info(group))


def group_settings(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    group = to_jid(a["group_id"])
    client.set_group_announce(group, a["admins_only"])
    return _group(client.get_group_info(group))


def member_requests(client: Any, a: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": jid_text(r.Participant)} for r in client.get_group_request_participants(to_jid(a["group_id"]))]


def invite_code(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    link = str(client.get_group_invite_link(to_jid(a["group_id"]), a["__action"] == "revoke-invite"))
    code = link.rsplit("/", 1)[-1]
    return {"groupId": a["group_id"], "inviteCode": code, "inviteLink": f"https://chat.whatsapp.com/{code}"}


def invite_info(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    return _group(client.get_group_info_from_link(a["code"].rsplit("/", 1)[-1]))


def accept_invite(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    return {"groupId": jid_text(client.join_group_with_link(a["code"].rsplit("/", 1)[-1]))}


def own_profile(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    if a["__action"] == "set-display-name":
        client.set_profile_name(a["display_name"])
        return {"displayName": a["display_name"]}
    client.set_status_message(a["status"])
    return {"status": a["status"]}


def disappearing(client: Any, a: dict[str, Any]) -> dict[str, Any]:
    client.set_disappearing_timer(to_jid(a["chat_id"]), timedelta(seconds=a["duration"]))
    return {"chatId": a["chat_id"]}


_HANDLERS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "get-number-id": number_id, "get-profile-pic-url": profile_picture, "get-contacts": contacts,
    "get-contact-by-id": contact, "get-contact-about-info": about, "get-lid": lids, "get-blocked-contacts": blocked,
    "block-contact": block, "unblock-contact": block, "get-common-groups": common_groups,
    "get-group-info": group_info, "get-group-participants": group_info, "create-group": create_group,
    "add-group-participant": participants, "remove-group-participant": participants,
    "promote-group-participant": participants, "demote-group-participant": participants,
    "update-group-info": update_group, "update-group-settings": group_settings,
    "get-group-member-requests": member_requests, "get-invite-code": invite_code, "revoke-invite": invite_code,
    "get-invite-info": invite_info, "accept-invite": accept_invite, "accept-group-invite": accept_invite,
    "set-display-name": own_profile, "set-status": own_profile, "set-disappearing-messages": disappearing,
}
ACTIONS = frozenset(_HANDLERS)
"""What the whatsmeow engine carries out (every directory action but the local ones and :data:`UNSUPPORTED`)."""
