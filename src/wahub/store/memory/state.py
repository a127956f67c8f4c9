"""The in-memory fake's tables and helpers (see :mod:`wahub.store.memory`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from wahub.domain.outbox import ItemStatus as St
from wahub.domain.outbox import OutboxItem
from wahub.store.base import Fenced
from wahub.store.heldleases import HeldLeases
from wahub.store.records import (
    CloudCredentials,
    EventDraft,
    EventRecord,
    InstanceRecord,
    PollRecord,
    Transition,
    outbox_item,
)

Row = dict[str, Any]

_OPEN = (St.QUEUED.value, St.SENDING.value)
_FINAL_PURGEABLE = (St.SENT.value, St.FAILED.value, St.CANCELED.value)  # `uncertain` waits for a human, never purged
UNCERTAIN_ERROR = "process stopped after handing the item to the engine; delivery unknown"  # as SqlStore




def _item(row: Row) -> OutboxItem:
    return outbox_item(row)


def _event(row: Row) -> EventRecord:
    return EventRecord(**row)


class MemoryBase(HeldLeases):
    """The dictionaries every port of the fake keeps, and small helpers over them."""


    def __init__(self) -> None:
        self._seq = itertools.count(1)  # one counter for every table's surrogate keys
        self._instances: dict[str, InstanceRecord] = {}
        self._outbox: dict[int, Row] = {}  # seq -> row; insertion order is seq order
        self._outbox_retired: list[Row] = []  # finished items of deleted instances, oldest first
        self._send_log: list[Row] = []
        self._events: dict[int, Row] = {}  # seq -> EventRecord fields
        self._polls: dict[tuple[str, str], PollRecord] = {}
        self._votes: dict[tuple[str, str, str], Row] = {}
        self._inbound_seen: dict[tuple[str, str], int] = {}
        self._identities: dict[tuple[str, str], tuple[str, int]] = {}  # (instance_id, lid) -> (phone, updated_at)
        self._numbers: dict[tuple[str, str], tuple[str | None, int]] = {}  # (instance_id, typed) -> (resolved, at)
        self._transitions: list[tuple[str, Transition]] = []  # (instance_id, transition), oldest first
        self._restarts: list[tuple[str, int]] = []  # (instance_id, at)
        self._cloud_credentials: dict[str, CloudCredentials] = {}
        self._chat_inbound: dict[tuple[str, str], int] = {}
        self._leases: dict[str, Row] = {}  # instance id -> {owner, token, expires_at}
        self._nodes: dict[str, Row] = {}

    def _fence(self, instance_id: str | None) -> None:
        """Refuse a write for an instance this node does not hold under its claimed token (as the SQL
        store's fenced transaction); nothing without fencing."""
        if self._fence_node is None or instance_id is None:
            return
        token = (self._held_tokens or {}).get(instance_id)
        lease = self._leases.get(instance_id)
        if token is None or lease is None or lease["owner"] != self._fence_node or lease["token"] != token:
            if self._held_tokens is not None:
                self._held_tokens.pop(instance_id, None)
            if self._on_fenced is not None:
                self._on_fenced(instance_id)
            raise Fenced(instance_id)

    # -- lifecycle ------------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Nothing to migrate."""

    async def close(self) -> None:
        """Nothing to close; the data stays until the object is dropped."""

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    def watch_faults(self, listener: Callable[[str | None], None]) -> None:
        """The fake never fails a write: nothing to report."""

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _copy_instance(rec: InstanceRecord) -> InstanceRecord:
        return replace(rec, webhook_events=list(rec.webhook_events),
                       apply_typing_to=list(rec.apply_typing_to) if rec.apply_typing_to is not None else None)

    def _by_key(self, instance_id: str, key: str) -> Row | None:
        return next((r for r in self._outbox.values()
                     if r["instance_id"] == instance_id and r["idempotency_key"] == key), None)

    def _by_message_id(self, instance_id: str, message_id: str) -> Row | None:
        return next((r for r in self._outbox.values()
                     if r["instance_id"] == instance_id and r["message_id"] == message_id), None)

    def _unlog(self, queue_id: str) -> None:
        self._send_log = [r for r in self._send_log if r["queue_id"] != queue_id]

    def _add_events(self, events: Sequence[EventDraft], now: int) -> None:
        for e in events:
            seq = next(self._seq)
            self._events[seq] = {
                "seq": seq, "event_id": e.event_id, "instance_id": e.instance_id, "event": e.event,
                "body": e.body, "status": "pending", "attempts": 0, "next_attempt_at": now,
                "created_at": now, "delivered_at": None, "last_error": None, "last_status_code": None}
