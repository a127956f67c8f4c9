"""Plain records the store returns besides outbox items."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem
from wahub.domain.outbox import ItemStatus as St


@dataclass(frozen=True)
class InstanceRecord:
    """One instance row. Times are epoch ms."""

    id: str
    name: str
    webhook_url: str | None
    webhook_events: list[str]
    webhook_secret: str | None
    state: str
    state_since: int
    state_reason: str | None
    restricted_until: int | None
    phone: str | None
    push_name: str | None
    limit_per_minute: int | None
    limit_per_hour: int | None
    send_interval_ms: int | None
    last_error: str | None
    created_at: int
    default_country_code: str | None = None  # digits completing a national number (``20``)
    typing_indicator_enabled: bool | None = None  # None: TYPING_INDICATOR_ENABLED
    apply_typing_to: list[str] | None = None  # the existing wa-hub's applyTypingTo, kept as given
    engine: str = "whatsmeow"  # sandbox | whatsmeow | cloud, fixed at creation


@dataclass(frozen=True)
class CloudCredentials:
    """A cloud instance's sealed credentials row (``sealed`` opens with ``WAHUB_CLOUD_CREDENTIALS_KEY``)."""

    instance_id: str
    sealed: str
    phone_number_id: str
    updated_at: int


@dataclass(frozen=True)
class EventDraft:
    """A webhook event to store: ``body`` is the exact serialised JSON that will be signed."""

    event_id: str
    instance_id: str
    event: str
    body: str


@dataclass(frozen=True)
class EventRecord:
    """A stored webhook event and its delivery state."""

    seq: int
    event_id: str
    instance_id: str
    event: str
    body: str
    status: str
    attempts: int
    next_attempt_at: int
    created_at: int
    delivered_at: int | None
    last_error: str | None
    last_status_code: int | None


@dataclass(frozen=True)
class PollRecord:
    """A poll as wa-hub sent it."""

    instance_id: str
    message_id: str
    queue_id: str
    chat_id: str
    idempotency_key: str
    caption: str
    options: list[str]
    multiple: bool


@dataclass(frozen=True)
class VoteRecord:
    """The latest vote of one voter on one poll."""

    voter: str
    selected: list[str]
    timestamp: int
    voter_alt: str | None


@dataclass(frozen=True)
class Transition:
    """One recorded state change."""

    at: int
    from_state: str
    to_state: str
    reason: str | None


@dataclass(frozen=True)
class QueueStats:
    """Counts of an instance's outbox items by status, and the oldest open item's enqueue time."""

    by_status: dict[str, int] = field(default_factory=dict)
    oldest_queued_at: int | None = None

    @property
    def depth(self) -> int:
        """Open items: queued plus sending."""
        return self.by_status.get(St.QUEUED.value, 0) + self.by_status.get(St.SENDING.value, 0)


@dataclass(frozen=True)
class RecoveryReport:
    """What start-up recovery did: items re-queued, and items now ``uncertain``."""

    requeued: int
    uncertain: list[Any]


def dump_json(value: Any) -> str:
    """Compact JSON text (UTF-8 kept) as both stores keep it in JSON columns."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def outbox_item(m: Mapping[str, Any]) -> OutboxItem:
    """An :class:`OutboxItem` from a row of the ``outbox`` table (``payload`` as stored JSON text)."""
    return OutboxItem(
        seq=m["seq"], queue_id=m["queue_id"], instance_id=m["instance_id"],
        idempotency_key=m["idempotency_key"], key_source=m["key_source"], kind=ItemKind(m["kind"]),
        chat_id=m["chat_id"], payload=json.loads(m["payload"]), fingerprint=m["fingerprint"],
        status=ItemStatus(m["status"]), attempts=m["attempts"], next_attempt_at=m["next_attempt_at"],
        created_at=m["created_at"], updated_at=m["updated_at"], handed_over_at=m["handed_over_at"],
        sent_at=m["sent_at"], message_id=m["message_id"], last_error=m["last_error"],
        error_reason=m["error_reason"], chosen_message_id=m.get("chosen_message_id"),
        ack=m.get("ack"),
    )


@dataclass(frozen=True)
class FleetFigures:
    """What a fleet view shows of one instance: items by status, oldest open item (epoch ms), sends
    after ``sent_since``, and webhook events pending or dead."""

    by_status: dict[str, int] = field(default_factory=dict)
    oldest_open_at: int | None = None
    sent: int = 0
    events_pending: int = 0
    events_dead: int = 0

    @property
    def depth(self) -> int:
        """Open items (queued or sending)."""
        return self.by_status.get("queued", 0) + self.by_status.get("sending", 0)


@dataclass(frozen=True)
class LeaseRecord:
    """Who runs an instance: ``owner`` node id (None: free) until ``expires_at`` (epoch ms) under
    fencing ``token`` (grows by one with every claim)."""

    instance_id: str
    owner: str | None
    token: int
    expires_at: int


@dataclass(frozen=True)
class NodeRecord:
    """A hub node on the shared database: ``heartbeat_at`` epoch ms, ``owned`` leases held now."""

    id: str
    address: str | None
    capacity: int
    heartbeat_at: int
    started_at: int
    owned: int = 0


@dataclass(frozen=True)
class ClaimRound:
    """What a node needs to take its fair share: instances in all, free ones (no live lease),
    live nodes (heartbeat within the TTL) and how many this node holds now."""

    instances: int
    free: int
    live_nodes: int
    owned: int
