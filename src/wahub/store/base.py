"""The storage interface: what the runtime needs from persistence, whatever the backend.

Two implementations: :class:`wahub.store.sql.SqlStore` (SQLite or PostgreSQL) and
:class:`wahub.store.memory.MemoryStore` (an in-memory fake for fast tests). Both pass the same
behavioural suites, one per port, in ``tests/integration/store/``.

Times are epoch milliseconds throughout. ``seq`` numbers grow with insertion order and define
FIFO order (outbox) and delivery order (webhook events).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from wahub.domain.outbox import ItemStatus as St
from wahub.domain.outbox import OutboxItem
from wahub.store.records import (
    ClaimRound,
    CloudCredentials,
    EventDraft,
    EventRecord,
    FleetFigures,
    InstanceRecord,
    LeaseRecord,
    NodeRecord,
    PollRecord,
    QueueStats,
    Transition,
    VoteRecord,
)

AckRule = Callable[[str | None, str], bool]
"""Whether an ack moves a stored one forward (:func:`wahub.domain.acks.advances`)."""

EventBuilder = Callable[[OutboxItem], EventDraft | None]
VoteRule = Callable[[int, Sequence[int]], bool]
"""``supersedes(timestamp, stored_timestamps)``: whether a vote replaces the person's stored votes."""
"""Builds the webhook event stored with an ack change (None: no event)."""


class QueueFullSignal(Exception):
    """Internal: the instance's outbox is full (raised inside :meth:`Store.insert_item`)."""

    def __init__(self, open_count: int) -> None:
        super().__init__(f"{open_count} open items")
        self.open_count = open_count


class Fenced(Exception):
    """A write for an instance whose lease this node no longer holds: the database refused it and
    nothing was written. The runtime stops the instance's engine and send loop at once."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance {instance_id} is leased to another node (stale fencing token)")
        self.instance_id = instance_id


class AdminPort(Protocol):
    """Opening, closing and checking the store (composition root and readiness)."""

    async def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        ...

    async def close(self) -> None:
        """Release every resource (connections)."""
        ...

    async def ping(self) -> bool:
        """True when the store answers."""
        ...

    def watch_faults(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(reason)`` when a write fails for the store's sake and ``listener(None)`` when
        one succeeds again (the runtime's store-fault condition)."""
        ...

    async def purge(self, older_than: int) -> dict[str, int]:
        """Delete old final records; returns how many rows per table."""
        ...


class InstancesPort(Protocol):
    """Instance rows (the instances room)."""

    async def create_instance(self, *, id: str, name: str, webhook_url: str | None,
                              webhook_events: list[str], webhook_secret: str | None, now: int,
                              state: str = "initializing", engine: str = "whatsmeow",
                              default_country_code: str | None = None, typing_indicator_enabled: bool | None = None,
                              apply_typing_to: list[str] | None = None, limit_per_minute: int | None = None,
                              limit_per_hour: int | None = None, send_interval_ms: int | None = None,
                              ) -> InstanceRecord:
        """Insert an instance driven by ``engine`` with its optional send settings (``default_country_code``
        digits, ``typing_indicator_enabled`` None = the setting, ``apply_typing_to`` as given).
        Raises :class:`~wahub.domain.errors.Conflict` when the id exists."""
        ...

    async def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance, or None."""
        ...

    async def list_instances(self) -> list[InstanceRecord]:
        """Every instance, oldest first (ties by id)."""
        ...

    async def update_instance(self, instance_id: str, **values: Any) -> None:
        """Set columns of an instance. Raises :class:`~wahub.domain.errors.NotFound`."""
        ...

    async def delete_instance(self, instance_id: str) -> int | None:
        """Delete an instance and everything recorded for it in one step; returns how many open
        (queued or sending) items were deleted with it, None when there was no such instance."""
        ...


class LifecyclePort(Protocol):
    """Transitions and the restart budget (the supervisor)."""

    async def record_transition(self, instance_id: str, *, from_state: str, to_state: str, reason: str | None,
                                now: int, events: Sequence[EventDraft] = (), **instance_values: Any) -> None:
        """Move an instance to ``to_state`` and store its webhook events atomically."""
        ...

    async def transitions(self, instance_id: str, limit: int = 20) -> list[Transition]:
        """The most recent transitions, newest first."""
        ...

    async def count_transitions_to(self, instance_id: str, to_state: str, since: int) -> int:
        """How many times the instance entered ``to_state`` after ``since``."""
        ...

    async def record_restart(self, instance_id: str, *, kind: str, reason: str | None, now: int) -> None:
        """Count one restart against the instance's budget."""
        ...

    async def restarts_since(self, instance_id: str, since: int) -> list[int]:
        """Times (ascending) of restarts after ``since``."""
        ...


class OutboxPort(Protocol):
    """The outbox: enqueue, claim, hand-over, outcomes and operator actions (outbox room and send loop)."""

    async def find_item_by_key(self, instance_id: str, key: str) -> OutboxItem | None:
        """The item stored under an idempotency key, or None."""
        ...

    async def latest_derived(self, instance_id: str, fingerprint: str) -> OutboxItem | None:
        """The newest item with a derived key and this fingerprint, or None (sliding key window)."""
        ...

    async def insert_item(self, *, queue_id: str, instance_id: str, idempotency_key: str, key_source: str,
                          kind: str, chat_id: str, payload: dict[str, Any], fingerprint: str, now: int,
                          max_open: int) -> tuple[OutboxItem, bool, int]:
        """``(item, created, open_count)``; raises :class:`QueueFullSignal` when full."""
        ...

    async def claim_next(self, instance_id: str, now: int, *, hand_over: bool = False,
                         chosen_message_id: str | None = None) -> OutboxItem | None:
        """Move the first due queued item to ``sending``; None when none is due or one is sending.

        ``hand_over``: also :meth:`mark_handed_over` at ``now`` with ``chosen_message_id``, in the same commit.
        """
        ...

    async def next_due_at(self, instance_id: str) -> int | None:
        """Smallest ``next_attempt_at`` among queued items, or None."""
        ...

    async def send_history(self, instance_id: str, since: int) -> list[int]:
        """Hand-over times (ascending) of the instance's sends after ``since``."""
        ...

    async def latest_send_at(self) -> int | None:
        """The newest send instant of any instance (epoch ms), or None: a floor for the clock at start."""
        ...

    async def release(self, seq: int, *, next_attempt_at: int, now: int, error: str | None = None,
                      reason: str | None = None, count_attempt: bool = False, unlog: bool = False) -> None:
        """Return a ``sending`` item to ``queued``."""
        ...

    async def mark_handed_over(self, item: OutboxItem, now: int, *, chosen_message_id: str | None = None) -> None:
        """Record that the item is about to reach the engine (and log the send), with its chosen id."""
        ...

    async def take_back_hand_over(self, item: OutboxItem) -> None:
        """Undo :meth:`mark_handed_over` of a still-``sending`` item whose engine call was not made (its
        number must first be asked about): the send-log row goes, the item stays claimed."""
        ...

    async def stamp_send(self, queue_id: str, at: int) -> None:
        """Set the logged time of the item's send to the engine-call instant ``at``."""
        ...

    async def mark_sent(self, item: OutboxItem, *, message_id: str, now: int, sent_at: int | None = None,
                        events: Sequence[EventDraft] = (), from_statuses: Sequence[str] = (St.SENDING.value,)) -> bool:
        """Record a successful send (``sent_at`` = the engine-call instant, default ``now``) with its
        events, if the item is still in ``from_statuses``; True when it was. Without ``uncertain`` in
        ``from_statuses`` (the send loop's own outcome) it also stamps the send log as :meth:`stamp_send`."""
        ...

    async def mark_failed(self, item: OutboxItem, *, error: str, reason: str, now: int, count_attempt: bool,
                          events: Sequence[EventDraft] = (), unlog: bool = False) -> None:
        """Record a final failure with its webhook events."""
        ...

    async def recover_in_flight(self, now: int) -> tuple[int, list[OutboxItem]]:
        """Start-up recovery of every instance: ``(requeued, uncertain items not reported yet)`` (one node
        only; with leases, :meth:`LeasesPort.claim_leases` recovers each claimed instance instead)."""
        ...

    async def mark_uncertain_reported(self, queue_id: str, now: int, events: Sequence[EventDraft]) -> bool:
        """Store ``message_uncertain`` once for a still-``uncertain`` item; False when not stored."""
        ...

    async def get_item(self, queue_id: str) -> OutboxItem | None:
        """The item with ``queue_id``, or None."""
        ...

    async def get_item_by_message_id(self, instance_id: str, message_id: str) -> OutboxItem | None:
        """The sent item that WhatsApp knows as ``message_id``, or None."""
        ...

    async def find_by_chosen_id(self, instance_id: str, message_id: str) -> OutboxItem | None:
        """The item whose engine-chosen message id (stored before the call) is ``message_id``, or None."""
        ...

    async def list_items(self, instance_id: str, *, statuses: Sequence[str] | None, limit: int,
                         offset: int) -> tuple[list[OutboxItem], int]:
        """A page of items (oldest first) and the total count matching the filter."""
        ...

    async def queue_stats(self, instance_id: str) -> QueueStats:
        """Counts by status and the oldest open item's enqueue time."""
        ...

    async def set_item_status(self, queue_id: str, *, from_statuses: Sequence[str], to_status: str, now: int,
                              reset_attempts: bool = False, events: Sequence[EventDraft] = (),
                              error: str | None = None, reason: str | None = None) -> bool:
        """Compare-and-set an item's status; True when it changed (``error``/``reason`` set ``last_error``)."""
        ...

    async def clear_queue(self, instance_id: str, now: int) -> int:
        """Cancel every queued item of the instance; returns how many."""
        ...

    async def count_sent_since(self, instance_id: str, since: int) -> int:
        """Sends recorded in the send log after ``since``."""
        ...

    async def count_failures_since(self, instance_id: str, since: int) -> int:
        """Items that failed (finally) after ``since``."""
        ...


class ImportPort(Protocol):
    """Records moved in from another system (``wa-hub import-node``)."""

    async def insert_sent_item(self, *, queue_id: str, instance_id: str, idempotency_key: str, key_source: str,
                               kind: str, chat_id: str, payload: dict[str, Any], fingerprint: str, message_id: str,
                               created_at: int, sent_at: int) -> bool:
        """Store an item that was already sent elsewhere (``sent``, with its message id) in one step.

        For moving records from another system: nothing is logged as a send (no rate-limit
        history), no webhook event is stored. Returns False (and changes nothing) when the key
        is already taken on the instance.
        """
        ...


class InboundPort(Protocol):
    """Inbound messages, polls, votes and acks (the inbound room)."""

    async def get_poll(self, instance_id: str, message_id: str) -> PollRecord | None:
        """The poll wa-hub sent as ``message_id``, or None."""
        ...

    async def record_vote(self, instance_id: str, poll_message_id: str, voter: str, *, timestamp: int,
                          selected: list[str], voter_alt: str | None, now: int, event: EventDraft | None,
                          supersedes: VoteRule, aliases: Sequence[str] = ()) -> bool:
        """Store a person's latest vote and its event; False for a duplicate or stale vote.

        ``aliases`` are the person's other ids: their stored votes count for ``supersedes`` and are
        replaced by this one (one latest vote per person).
        """
        ...

    async def remember_identity(self, instance_id: str, lid: str, phone: str, *, now: int) -> None:
        """Remember that ``lid`` (``…@lid``) and ``phone`` (``…@c.us``) are one person."""
        ...

    async def find_identity(self, instance_id: str, jid: str) -> tuple[str, str] | None:
        """``(lid, phone)`` of the person known under ``jid`` (either form), or None."""
        ...

    async def latest_votes(self, instance_id: str, poll_message_id: str) -> list[VoteRecord]:
        """Every voter's latest vote on a poll, by voter."""
        ...

    async def record_inbound(self, instance_id: str, message_id: str, *, now: int,
                             event: EventDraft | None) -> bool:
        """Mark an inbound message seen together with its event; False when seen before."""
        ...

    async def advance_ack(self, instance_id: str, message_id: str, ack: str, advances: AckRule, *,
                          now: int, event_for: EventBuilder) -> OutboxItem | None:
        """Move a sent item's ack forward only; the item when it advanced, else None."""
        ...


class NumbersPort(Protocol):
    """What WhatsApp answered about a typed number: the id it knows it by, or not on WhatsApp (the resolver)."""

    async def remember_number(self, instance_id: str, typed: str, resolved: str | None, *, now: int) -> None:
        """Store the answer for ``typed`` (a ``…@c.us`` id): ``resolved`` is WhatsApp's id, None = not on it."""
        ...

    async def find_number(self, instance_id: str, typed: str) -> tuple[str | None, int] | None:
        """``(resolved, checked_at)`` for ``typed`` (``resolved`` None = not on WhatsApp), or None when never asked."""
        ...


class EventsPort(Protocol):
    """Webhook events (the event catalogue and the dispatcher)."""

    async def add_events(self, events: Sequence[EventDraft], now: int) -> None:
        """Store events for delivery."""
        ...

    async def instances_with_pending_events(self) -> list[str]:
        """Instance ids that have undelivered events (no particular order)."""
        ...

    async def head_event(self, instance_id: str) -> EventRecord | None:
        """The oldest pending event of an instance."""
        ...

    async def pending_events(self, instance_id: str, limit: int) -> list[EventRecord]:
        """Up to ``limit`` pending events of an instance, oldest first."""
        ...

    async def event_delivered(self, seq: int, *, now: int, status_code: int) -> None:
        """Mark an event delivered."""
        ...

    async def events_delivered(self, marks: Sequence[tuple[int, int, int]]) -> None:
        """Mark events delivered in one transaction: ``(seq, delivered_at ms, status_code)`` each."""
        ...

    async def event_failed(self, seq: int, *, now: int, next_attempt_at: int | None, error: str,
                           status_code: int | None) -> None:
        """Record a failed attempt: retry at ``next_attempt_at``, or dead letter when None."""
        ...

    async def list_events(self, instance_id: str, *, status: str | None, limit: int,
                          offset: int = 0) -> list[EventRecord]:
        """Events of an instance, newest first, optionally by status."""
        ...

    async def replay_events(self, instance_id: str, *, event_id: str | None, now: int) -> int:
        """Put dead letters (one, or all of the instance) back to pending; returns how many."""
        ...

    async def get_event(self, instance_id: str, event_id: str) -> EventRecord | None:
        """One webhook event of an instance with its stored body and last response, or None."""
        ...

    async def event_stats(self, instance_id: str) -> dict[str, Any]:
        """Backlog, dead letters, delivered count, last success and last error of an instance."""
        ...


class FleetPort(Protocol):
    """Figures of many instances at once (the dashboard's list, the metrics scrape)."""

    async def fleet_figures(self, instance_ids: Sequence[str] | None, *, sent_since: int) -> dict[str, FleetFigures]:
        """Queue, send-log and webhook figures of many instances (None: all) in ONE aggregate statement.

        Instances with nothing recorded are absent from the answer (their figures are all zero).
        ``sent_since`` is epoch ms: sends in the send log after it are counted.
        """
        ...


class CloudPort(Protocol):
    """Cloud API instances: sealed credentials and each chat's last inbound time (the cloud room)."""

    async def put_cloud_credentials(self, instance_id: str, *, sealed: str, phone_number_id: str, now: int) -> None:
        """Store (or replace) an instance's sealed credentials.

        Raises :class:`~wahub.domain.errors.Conflict` when another instance has ``phone_number_id``
        and :class:`~wahub.domain.errors.NotFound` when the instance does not exist.
        """
        ...

    async def get_cloud_credentials(self, instance_id: str) -> CloudCredentials | None:
        """The instance's sealed credentials, or None."""
        ...

    async def note_chat_inbound(self, instance_id: str, chat_id: str, at: int) -> None:
        """Record that ``chat_id`` wrote at ``at`` (epoch ms); an older time never replaces a newer one."""
        ...

    async def last_chat_inbound(self, instance_id: str, chat_id: str) -> int | None:
        """When ``chat_id`` last wrote to the instance (epoch ms), or None."""
        ...


class LeasesPort(Protocol):
    """Nodes and instance leases on a shared database (the leases room), and the fencing of writes.

    Once :meth:`fence_as` named this node, the writes that matter (outbox claim, hand-over and
    outcomes, send-log stamps, state transitions) check in the same transaction that this node still
    holds the instance's lease under the token it claimed; otherwise they raise :class:`Fenced` and
    write nothing. Without :meth:`fence_as` (one node) nothing is checked and nothing costs more.
    """

    def fence_as(self, node_id: str, *, on_lost: Callable[[str], None] | None = None) -> None:
        """From now on, fence the writes of instances by this node's leases; ``on_lost(instance_id)``
        is called when a write was refused."""
        ...

    def holds(self, instance_id: str) -> bool:
        """Whether this node holds the instance's lease (as last claimed or renewed)."""
        ...

    async def heartbeat(self, node_id: str, *, address: str | None, capacity: int, now: int) -> None:
        """Register the node or refresh its heartbeat (epoch ms), address and capacity."""
        ...

    async def claim_round(self, node_id: str, *, now: int, ttl_ms: int) -> ClaimRound:
        """Give every instance a lease row and count what a claim needs (instances, free, live nodes, owned)."""
        ...

    async def claim_leases(self, node_id: str, *, now: int, ttl_ms: int,
                           limit: int) -> tuple[list[LeaseRecord], list[OutboxItem]]:
        """Take up to ``limit`` free or expired leases (oldest instances first), each with its token
        plus one, expiring at ``now + ttl_ms``; in the same transaction recover their in-flight items
        (never handed over → ``queued``; handed over → ``uncertain``, their send-log time moved to
        ``now`` so the windows stay conservative). Returns ``(claimed, items now uncertain)``.

        A free lease a write of its old owner still locks is not taken (the write lands first); when
        one is passed by, the open transactions of nodes not live at ``now`` are ended, so that a node
        stopped in the middle of a write never keeps a lease from being claimed by the next round."""
        ...

    async def renew_leases(self, node_id: str, *, now: int, ttl_ms: int) -> list[LeaseRecord]:
        """Extend every lease the node holds to ``now + ttl_ms`` in ONE statement; returns them.
        A lease missing from the answer was lost (another node claimed it)."""
        ...

    async def release_leases(self, node_id: str, instance_ids: Sequence[str], *, leaving: bool = True) -> int:
        """Give leases up: free at once, tokens kept. ``leaving`` (clean shutdown): the node also stops
        counting as live. Returns how many."""
        ...

    def forget_lease(self, instance_id: str) -> None:
        """Stop writing for an instance (fenced out or given up): its writes are refused from now on."""
        ...

    async def list_leases(self) -> list[LeaseRecord]:
        """Every lease row."""
        ...

    async def list_nodes(self) -> list[NodeRecord]:
        """Every registered node with how many leases it holds now, by id."""
        ...

    async def due_on(self, node_id: str, now: int) -> list[str]:
        """Instances leased to the node with a queued item due at ``now`` (epoch ms): the owner's sweep,
        so an item never waits for a lost wake-up longer than one lease period."""
        ...

    async def wake_owner(self, instance_id: str) -> None:
        """Tell whichever node runs the instance that it has work (PostgreSQL ``NOTIFY``)."""
        ...

    async def listen_wakes(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(instance_id)`` for every :meth:`wake_owner` of any node (``LISTEN``); again with the
        same listener: nothing added, a connection the server closed is opened again."""
        ...


class Store(AdminPort, InstancesPort, LifecyclePort, OutboxPort, ImportPort, InboundPort, EventsPort, FleetPort,
            CloudPort, NumbersPort, LeasesPort,
            Protocol):
    """Every port at once: what a backend implements (the composition root hands out the parts)."""
