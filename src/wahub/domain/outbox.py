"""Outbox items: statuses, kinds and the record shape shared by store, runtime and API."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from wahub.domain.randomid import random_hex


class ItemStatus(enum.StrEnum):
    """Life of an outbox item (DESIGN §3.3).

    ``queued → sending → sent | failed | canceled``; ``uncertain`` when the process died after
    handing the item to the engine and before recording the result.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELED = "canceled"
    UNCERTAIN = "uncertain"


OPEN_STATUSES = frozenset({ItemStatus.QUEUED, ItemStatus.SENDING})
FINAL_STATUSES = frozenset({ItemStatus.SENT, ItemStatus.FAILED, ItemStatus.CANCELED, ItemStatus.UNCERTAIN})


class ItemKind(enum.StrEnum):
    """What an item sends."""

    TEXT = "text"
    POLL = "poll"
    MEDIA = "media"  # image, video, audio, voice note (ptt), document or sticker
    LOCATION = "location"
    VCARD = "vcard"
    REACTION = "reaction"  # an emoji on a message ("" removes it)
    EDIT = "edit"  # new text for a message this account sent
    REVOKE = "revoke"  # delete a message for everyone
    FORWARD = "forward"  # a copy of a message this hub sent, marked "Forwarded"


#: Kinds that act on an earlier message (``targetMessageId``) rather than add one to the chat.
TARGETING_KINDS = frozenset({ItemKind.REACTION, ItemKind.EDIT, ItemKind.REVOKE})


@dataclass(frozen=True)
class OutboxItem:
    """One requested send. Times are epoch milliseconds."""

    seq: int
    queue_id: str
    instance_id: str
    idempotency_key: str
    key_source: str  # "header" | "body" | "derived" | "imported"
    kind: ItemKind
    chat_id: str
    payload: dict[str, Any]
    fingerprint: str
    status: ItemStatus
    attempts: int
    next_attempt_at: int
    created_at: int
    updated_at: int
    handed_over_at: int | None
    sent_at: int | None
    message_id: str | None
    last_error: str | None
    error_reason: str | None
    chosen_message_id: str | None = None  # the id the engine was asked to use, stored before the call
    ack: str | None = None  # the furthest receipt stored: server | delivered | read | played


@dataclass(frozen=True)
class EnqueueResult:
    """Outcome of an enqueue: the item and whether it already existed under that key."""

    item: OutboxItem
    replay: bool
    queue_depth: int


MAX_TEXT_LENGTH = 65_536  # WhatsApp rejects longer text messages
MIN_POLL_OPTIONS = 2
MAX_POLL_OPTIONS = 12  # WhatsApp's limit for poll options
MAX_POLL_OPTION_LENGTH = 100
MAX_CAPTION_LENGTH = 255
MAX_MEDIA_CAPTION_LENGTH = 1024  # WhatsApp cuts media captions at 1 024 characters
MAX_FILENAME_LENGTH = 255
MAX_VCARD_LENGTH = 10_000
MEDIA_TYPES = ("image", "video", "audio", "ptt", "document", "sticker")


def new_queue_id(now_ms: int) -> str:
    """A new item's ``queueId``: 32 hex characters, the enqueue time (ms since the epoch, 12 hex digits)
    then 80 random bits (``os.urandom``, drawn in bulk: :mod:`wahub.domain.randomid`).

    Ids made later sort later, so the unique index on ``queue_id`` takes a batch's new rows on its
    last page; a random id (``uuid4``) put every row of a batch on a page of its own, each written to
    the database log at commit. Clients treat the id as opaque; it tells no more than the item's
    ``createdAt``.
    """
    return f"{now_ms & 0xFFFF_FFFF_FFFF:012x}{random_hex(10)}"
