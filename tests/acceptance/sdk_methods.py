"""Which of the official WaAPI SDK's 129 methods wa-hub runs, in what order, and why the others do not.

:data:`RUN` lists the calls the acceptance tests make (each must return without raising, so
``status`` and ``data.status`` are ``success``); :data:`OUTBOUND` the sending actions built
separately; :data:`OUT_OF_SCOPE` every other method with the reason. Together they name each
public method of ``waapi.WaAPI`` exactly once (``request`` and ``close`` are transport, not methods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CUSTOMER = "201000000001@c.us"
FRIEND = "201000000002@c.us"


@dataclass
class Ctx:
    """What earlier calls produced for later ones."""

    message_id: str = ""
    group_id: str = ""
    invite_code: str = ""
    answers: dict[str, Any] = field(default_factory=dict)


Call = tuple[str, Callable[[Ctx], dict[str, Any]]]


def _k(**kw: Any) -> Callable[[Ctx], dict[str, Any]]:
    return lambda _ctx: kw


READS: list[Call] = [
    ("get_chats", _k(limit=10)),
    ("get_chat_by_id", _k(chat_id=CUSTOMER)),
    ("fetch_messages", _k(chat_id=CUSTOMER, limit=20)),
    ("get_message_by_id", lambda c: {"message_id": c.message_id}),
    ("get_message_info_by_id", lambda c: {"message_id": c.message_id}),
    ("search_messages", _k(query="parcel")),
    ("get_reactions", lambda c: {"message_id": c.message_id}),
    ("get_pinned_messages", _k(chat_id=CUSTOMER)),
    ("get_contacts", _k()),
    ("get_contact_by_id", _k(contact_id=CUSTOMER)),
    ("get_contact_about_info", _k(contact_id=CUSTOMER)),
    ("get_profile_pic_url", _k(contact_id=CUSTOMER)),
    ("get_number_id", _k(number="201000000001")),
    ("get_lid", _k(contact_ids=[CUSTOMER])),
    ("get_formatted_number", _k(number="201000000001")),
    ("get_country_code", _k(number="201000000001")),
    ("is_registered_user", _k(contact_id=CUSTOMER)),
    ("get_disappearing_durations", _k()),
    ("get_disappearing_messages", _k(chat_id=CUSTOMER)),
]
CHAT_ACTIONS: list[Call] = [
    ("archive_chat", _k(chat_id=CUSTOMER)),
    ("unarchive_chat", _k(chat_id=CUSTOMER)),
    ("pin_chat", _k(chat_id=CUSTOMER)),
    ("unpin_chat", _k(chat_id=CUSTOMER)),
    ("mute_chat", _k(chat_id=CUSTOMER, unmute_date="2030-01-01T00:00:00Z")),
    ("unmute_chat", _k(chat_id=CUSTOMER)),
    ("mark_chat_unread", _k(chat_id=CUSTOMER)),
    ("set_disappearing_messages", _k(chat_id=CUSTOMER, duration=86_400)),
    ("sync_chat_history", _k(chat_id=CUSTOMER)),
    ("block_contact", _k(contact_id=FRIEND)),
    ("get_blocked_contacts", _k()),
    ("unblock_contact", _k(contact_id=FRIEND)),
    ("upsert_contact", _k(phone_number="201000000002", first_name="Mona", last_name="Ali")),
    ("delete_contact", _k(phone_number="201000000002")),
    ("set_display_name", _k(display_name="Shop")),
    ("set_status", _k(status="Open 9-17")),
]
GROUPS: list[Call] = [
    ("create_group", _k(group_name="Orders", group_participants=[CUSTOMER])),
    ("get_group_info", lambda c: {"chat_id": c.group_id}),
    ("get_group_participants", lambda c: {"chat_id": c.group_id}),
    ("add_group_participant", lambda c: {"chat_id": c.group_id, "participant": FRIEND}),
    ("promote_group_participant", lambda c: {"chat_id": c.group_id, "participant": FRIEND}),
    ("demote_group_participant", lambda c: {"chat_id": c.group_id, "participant": FRIEND}),
    ("remove_group_participant", lambda c: {"chat_id": c.group_id, "participant": FRIEND}),
    ("update_group_info", lambda c: {"chat_id": c.group_id, "subject": "Orders today", "description": "daily"}),
    ("update_group_settings", lambda c: {"chat_id": c.group_id, "message_admin_only": True}),
    ("get_common_groups", _k(contact_id=CUSTOMER)),
    ("get_group_member_requests", lambda c: {"chat_id": c.group_id}),
    ("accept_group_member_requests", lambda c: {"chat_id": c.group_id}),
    ("deny_group_member_requests", lambda c: {"chat_id": c.group_id}),
    ("action", lambda c: {"name": "get-invite-code", "payload": {"chatId": c.group_id}}),
    ("get_invite_info", lambda c: {"invite_code": c.invite_code}),
    ("accept_invite", lambda c: {"invite_code": c.invite_code}),
    ("accept_group_invite", lambda c: {"invite_code": c.invite_code}),
    ("clear_chat_messages", lambda c: {"chat_id": c.group_id}),
    ("delete_chat_by_id", lambda c: {"chat_id": c.group_id}),
]
SENDS_AND_INSTANCE = ("get_instances", "create_instance", "get_instance", "get_qr_code", "get_status",
                      "request_pairing_code", "send_message", "create_poll", "get_poll_votes", "reboot", "logout",
                      "delete_instance")
"""Run by the acceptance test around :data:`RUN` (instance life cycle and the queued sends)."""

RUN = [name for name, _ in READS + CHAT_ACTIONS + GROUPS] + list(SENDS_AND_INSTANCE)

OUTBOUND = ("send_media", "send_seen", "send_vcard", "send_location", "download_media", "delete_message_by_id",
            "edit_message", "forward_message", "react_to_message", "send_typing", "send_stop_typing",
            "send_presence_available", "send_presence_unavailable")
"""Outbound (sending actions): built beside these, counted when both are merged."""

_CHANNELS = "channels (newsletters): wa-hub has no channel model; the sandbox does not simulate them"
_COMMUNITIES = "communities: not simulated; whatsmeow's community calls are not wired"
_LABELS = "labels are a WhatsApp Business app feature synced by app state, which the engines do not expose"
_STATUS = "Status (stories) posts to status@broadcast, which wa-hub refuses by default (ALLOW_STATUS_BROADCAST)"
_BUSINESS = "business profile, catalogue data and quick replies live in the WhatsApp Business app"
_EVENTS = "event and call-link messages are message kinds wa-hub does not send yet"
_MESSAGE_FLAGS = "pinning, starring and mention lists of single messages are not kept by wa-hub"
_PRIVACY = "account privacy settings are left to the phone (a gateway should not change them)"
OUT_OF_SCOPE: dict[str, str] = {
    **dict.fromkeys(("create_channel", "get_channels", "get_channel_by_id", "subscribe_to_channel",
                     "unsubscribe_from_channel", "search_channels"), _CHANNELS),
    **dict.fromkeys(("create_community", "get_communities", "get_community_by_id", "get_community_subgroups",
                     "send_community_announcement", "link_community_subgroup", "unlink_community_subgroup",
                     "leave_community"), _COMMUNITIES),
    **dict.fromkeys(("get_labels", "get_label_by_id", "get_chat_labels", "get_chats_by_label_id",
                     "change_chat_labels"), _LABELS),
    **dict.fromkeys(("get_stories", "post_status", "set_status_privacy", "get_status_privacy", "revoke_status",
                     "revoke_status_message", "get_broadcast"), _STATUS),
    **dict.fromkeys(("get_business_profile", "get_business_categories", "set_business_profile", "get_quick_replies",
                     "create_quick_reply", "update_quick_reply", "delete_quick_reply", "add_customer_note",
                     "get_customer_note"), _BUSINESS),
    **dict.fromkeys(("send_event", "send_event_response", "edit_scheduled_event", "create_call_link",
                     "vote_on_poll"), _EVENTS),
    **dict.fromkeys(("pin_message", "unpin_message", "star_message", "unstar_message", "get_message_mentions"),
                    _MESSAGE_FLAGS),
    **dict.fromkeys(("get_privacy_settings", "set_privacy_setting"), _PRIVACY),
    "set_device_name": "the linked device's name is fixed when the session is linked",
    "get_chat_presence": "presence subscriptions belong with typing/presence (outbound)",
    "get_chat_presence_snapshot": "presence subscriptions belong with typing/presence (outbound)",
}
