"""The fake client's contacts, groups and number look-ups (neonize's calls, answered offline).

:class:`FakeDirectory` is mixed into :class:`~wahub.engines.whatsmeow.fakeclient.FakeClient`. Its
calls have neonize's names and arguments and answer neonize's protobuf types; failures raise
neonize's exception classes with whatsmeow's wording (``item-not-found``, ``forbidden``). Knobs
(``fake`` command actions, :meth:`FakeDirectory.directory_control`): ``number_alias`` (WhatsApp
knows ``number`` as ``jid``), ``contact`` (the contact store learns ``jid``'s ``push_name`` /
``full_name``), ``profile_picture`` (``jid``'s ``url``), ``join_request`` (``jid`` asks to join
``group``), ``groups`` (every group the fake holds, for assertions).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from neonize.exc import (
    CreateGroupError,
    GetGroupInfoError,
    InviteLinkError,
    IsOnWhatsAppError,
    UpdateGroupParticipantsError,
)
from neonize.proto.Neonize_pb2 import (
    JID,
    Blocklist,
    Contact,
    ContactInfo,
    GetUserInfoSingleReturnFunction,
    GroupAnnounce,
    GroupInfo,
    GroupLocked,
    GroupName,
    GroupParticipant,
    GroupParticipantRequest,
    GroupTopic,
    ProfilePictureInfo,
    UserInfo,
)

DIRECTORY_ACTIONS = ("number_alias", "contact", "profile_picture", "join_request", "groups")
_GROUP_IDS = itertools.count(1)


def _text(jid: Any) -> str:
    return f"{jid.User}@{jid.Server}"


def _jid(value: str) -> Any:
    user, _, server = value.rpartition("@")
    return JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=not value)


class _ContactStore:
    """neonize's ``client.contact``."""

    def __init__(self, owner: FakeDirectory) -> None:
        self.owner = owner

    def get_contact(self, user: Any) -> Any:
        return self.owner._contacts.get(_text(user), ContactInfo(Found=False))

    def get_all_contacts(self) -> list[Any]:
        return [Contact(JID=_jid(j), Info=info) for j, info in sorted(self.owner._contacts.items())]


class FakeDirectory:
    """Offline answers to neonize's contact, group and number calls (state lives in the fake's memory)."""

    connected: bool
    me: Any

    def _directory_state(self) -> None:
        if not hasattr(self, "_groups"):
            self._aliases: dict[str, str] = {}  # typed digits -> the s.whatsapp.net JID WhatsApp knows
            self._contacts: dict[str, Any] = {}
            self._pictures: dict[str, str] = {}
            self._blocked: list[str] = []
            self._groups: dict[str, dict[str, Any]] = {}  # jid -> {"name", "topic", "topic_id", "announce", ...}
            self.profile: dict[str, str] = {}

    @property
    def contact(self) -> _ContactStore:
        """The contact store."""
        self._directory_state()
        return _ContactStore(self)

    def _require_online(self, error: type[Exception]) -> None:
        self._directory_state()
        if not self.connected:
            raise error("websocket not connected")

    def _my_jid(self) -> str:
        return _text(self.me.JID) if self.me is not None else ""

    def known_as(self, number: str) -> str:
        """The JID WhatsApp answers for a typed number (``+`` and digits)."""
        self._directory_state()
        digits = number.lstrip("+")
        return self._aliases.get(digits, digits + "@s.whatsapp.net")

    # -- users -----------------------------------------------------------------------------------
    def get_profile_picture(self, jid: Any, extra: Any = None) -> Any:
        self._require_online(IsOnWhatsAppError)
        url = self._pictures.get(_text(jid))
        if url is None:
            raise IsOnWhatsAppError("the user doesn't have a profile picture (item-not-found)")
        return ProfilePictureInfo(URL=url, ID="1", Type="image", DirectPath="")

    def get_user_info(self, *jids: Any) -> list[Any]:
        self._require_online(IsOnWhatsAppError)
        return [GetUserInfoSingleReturnFunction(JID=j, UserInfo=UserInfo(Status="Hey there! I am using WhatsApp."))
                for j in jids]

    def get_lid_from_pn(self, jid: Any) -> Any:
        return _jid("")

    def get_pn_from_lid(self, jid: Any) -> Any:
        return _jid("")

    def get_blocklist(self) -> Any:
        self._require_online(IsOnWhatsAppError)
        return Blocklist(DHash="1", JIDs=[_jid(j) for j in self._blocked])

    def update_blocklist(self, jid: Any, action: Any) -> Any:
        self._require_online(IsOnWhatsAppError)
        who = _text(jid)
        if str(action.value) == "block" and who not in self._blocked:
            self._blocked.append(who)
        elif str(action.value) == "unblock" and who in self._blocked:
            self._blocked.remove(who)
        return self.get_blocklist()

    def set_profile_name(self, name: str) -> str:
        self._require_online(IsOnWhatsAppError)
        self.profile["name"] = name
        return name

    def set_status_message(self, msg: str) -> None:
        self._require_online(IsOnWhatsAppError)
        self.profile["status"] = msg

    def set_disappearing_timer(self, jid: Any, timer: Any, setting_ts: Any = None) -> None:
        self._require_online(IsOnWhatsAppError)
        self.profile[f"timer:{_text(jid)}"] = str(int(timer.total_seconds()))

    # -- groups ----------------------------------------------------------------------------------
    def _info(self, gid: str) -> Any:
        g = self._groups.get(gid)
        if g is None or self._my_jid() not in g["roles"]:
            raise GetGroupInfoError("failed to get group info: item-not-found")
        owner = _jid(g["owner"])
        return GroupInfo(JID=_jid(gid), OwnerJID=owner, GroupName=GroupName(Name=g["name"]),
                         GroupTopic=GroupTopic(Topic=g["topic"], TopicID=g["topic_id"]),
                         GroupLocked=GroupLocked(isLocked=False),
                         GroupAnnounce=GroupAnnounce(IsAnnounce=g["announce"]), GroupCreated=g["created"],
                         Participants=[GroupParticipant(JID=_jid(m), IsAdmin=r != "member",
                                                        IsSuperAdmin=r == "superadmin")
                                       for m, r in g["roles"].items()])

    def get_group_info(self, jid: Any) -> Any:
        self._require_online(GetGroupInfoError)
        return self._info(_text(jid))

    def get_joined_groups(self) -> list[Any]:
        self._require_online(GetGroupInfoError)
        return [self._info(gid) for gid, g in self._groups.items() if self._my_jid() in g["roles"]]

    def create_group(self, name: str, participants: list[Any] = [], linked_parent: Any = None,  # noqa: B006
                     group_parent: Any = None) -> Any:
        self._require_online(CreateGroupError)
        if not name.strip():
            raise CreateGroupError("failed to create group: 400 bad-request")
        gid = f"120363{next(_GROUP_IDS):012d}@g.us"
        roles = {self._my_jid(): "superadmin", **{_text(p): "member" for p in participants}}
        self._groups[gid] = {"name": name, "topic": "", "topic_id": "", "announce": False, "created": 1_767_225_600,
                             "owner": self._my_jid(), "roles": roles, "requests": [],
                             "code": hashlib.sha256(gid.encode()).hexdigest()[:22]}
        return self._info(gid)

    def _admin(self, gid: str) -> dict[str, Any]:
        self._info(gid)
        g = self._groups[gid]
        if g["roles"][self._my_jid()] == "member":
            raise UpdateGroupParticipantsError("failed to update group: 403 forbidden")
        return g

    def update_group_participants(self, jid: Any, participants_changes: list[Any], action: Any) -> list[Any]:
        self._require_online(UpdateGroupParticipantsError)
        g = self._admin(_text(jid))
        out = []
        for p in participants_changes:
            who, error = _text(p), 0
            if action.value == "add":
                g["roles"].setdefault(who, "member")
            elif who not in g["roles"]:
                error = 404
            elif action.value == "remove":
                del g["roles"][who]
            else:
                g["roles"][who] = "admin" if action.value == "promote" else "member"
            out.append(GroupParticipant(JID=p, Error=error))
        return out

    def set_group_name(self, jid: Any, name: str) -> None:
        self._require_online(GetGroupInfoError)
        self._admin(_text(jid))["name"] = name

    def set_group_topic(self, jid: Any, previous_id: str, new_id: str, topic: str) -> None:
        self._require_online(GetGroupInfoError)
        g = self._admin(_text(jid))
        if previous_id != g["topic_id"]:
            raise GetGroupInfoError("failed to set group topic: 409 conflict")
        g["topic"], g["topic_id"] = topic, new_id or hashlib.sha256(topic.encode()).hexdigest()[:16]

    def set_group_announce(self, jid: Any, announce: bool) -> None:
        self._require_online(GetGroupInfoError)
        self._admin(_text(jid))["announce"] = announce

    def get_group_request_participants(self, jid: Any) -> list[Any]:
        self._require_online(GetGroupInfoError)
        g = self._admin(_text(jid))
        return [GroupParticipantRequest(Participant=_jid(r), TimeAt=0) for r in g["requests"]]

    def get_group_invite_link(self, jid: Any, revoke: bool = False) -> str:
        self._require_online(InviteLinkError)
        g = self._admin(_text(jid))
        if revoke:
            g["code"] = hashlib.sha256((g["code"] + "revoked").encode()).hexdigest()[:22]
        return f"https://chat.whatsapp.com/{g['code']}"

    def _by_code(self, code: str) -> str:
        gid = next((gid for gid, g in self._groups.items() if g["code"] == code), None)
        if gid is None:
            raise InviteLinkError("failed to get group info: 404 item-not-found")
        return gid

    def get_group_info_from_link(self, code: str) -> Any:
        self._require_online(InviteLinkError)
        gid = self._by_code(code)
        g = self._groups[gid]
        return GroupInfo(JID=_jid(gid), GroupName=GroupName(Name=g["name"]), GroupTopic=GroupTopic(Topic=g["topic"]),
                         OwnerJID=_jid(g["owner"]), GroupCreated=g["created"])

    def join_group_with_link(self, code: str) -> Any:
        self._require_online(InviteLinkError)
        gid = self._by_code(code)
        self._groups[gid]["roles"].setdefault(self._my_jid(), "member")
        return _jid(gid)

    # -- knobs -----------------------------------------------------------------------------------
    def directory_control(self, args: dict[str, Any]) -> dict[str, Any]:
        """The knobs in the module docstring."""
        self._directory_state()
        action = args["action"]
        if action == "number_alias":
            self._aliases[str(args["number"]).lstrip("+")] = str(args["jid"]).replace("@c.us", "@s.whatsapp.net")
        elif action == "contact":
            self._contacts[str(args["jid"]).replace("@c.us", "@s.whatsapp.net")] = ContactInfo(
                Found=True, PushName=str(args.get("push_name", "")), FullName=str(args.get("full_name", "")),
                FirstName=str(args.get("full_name", "")).split(" ")[0])
        elif action == "profile_picture":
            self._pictures[str(args["jid"]).replace("@c.us", "@s.whatsapp.net")] = str(args["url"])
        elif action == "join_request":
            self._groups[str(args["group"])]["requests"].append(str(args["jid"]).replace("@c.us", "@s.whatsapp.net"))
        elif action == "groups":
            return {"groups": {gid: {k: v for k, v in g.items()} for gid, g in self._groups.items()}}
        return {}
