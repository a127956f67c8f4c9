"""Instances, transitions and restarts in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from wahub.domain.errors import Conflict, NotFound
from wahub.store.memory.state import _OPEN, MemoryBase
from wahub.store.records import (
    EventDraft,
    InstanceRecord,
    Transition,
)


class InstancesMemory(MemoryBase):
    """Instances, transitions and restarts in memory."""

    # -- instances -------------------------------------------------------------------------------
    async def create_instance(self, *, id: str, name: str, webhook_url: str | None,
                              webhook_events: list[str], webhook_secret: str | None, now: int,
                              state: str = "initializing", engine: str = "whatsmeow",
                              default_country_code: str | None = None, typing_indicator_enabled: bool | None = None,
                              apply_typing_to: list[str] | None = None, limit_per_minute: int | None = None,
                              limit_per_hour: int | None = None, send_interval_ms: int | None = None,
                              ) -> InstanceRecord:
        """Insert an instance (with its optional send settings) and take back the finished items of an
        earlier instance with this id. Raises :class:`Conflict` when the id exists."""
        if id in self._instances:
            raise Conflict(f"an instance with id {id!r} already exists", instanceId=id)
        rec = InstanceRecord(
            id=id, name=name, webhook_url=webhook_url, webhook_events=list(webhook_events),
            webhook_secret=webhook_secret, state=state, state_since=now, state_reason=None,
            restricted_until=None, phone=None, push_name=None, limit_per_minute=limit_per_minute,
            limit_per_hour=limit_per_hour, send_interval_ms=send_interval_ms, last_error=None, created_at=now,
            engine=engine,
            default_country_code=default_country_code, typing_indicator_enabled=typing_indicator_enabled,
            apply_typing_to=list(apply_typing_to) if apply_typing_to is not None else None)
        self._instances[id] = rec
        for row in [r for r in self._outbox_retired if r["instance_id"] == id]:
            seq = next(self._seq)
            self._outbox[seq] = {**row, "seq": seq}
        self._outbox_retired = [r for r in self._outbox_retired if r["instance_id"] != id]
        return self._copy_instance(rec)

    async def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance, or None."""
        rec = self._instances.get(instance_id)
        return self._copy_instance(rec) if rec else None

    async def list_instances(self) -> list[InstanceRecord]:
        """Every instance, oldest first."""
        recs = sorted(self._instances.values(), key=lambda r: (r.created_at, r.id))
        return [self._copy_instance(r) for r in recs]

    async def update_instance(self, instance_id: str, **values: Any) -> None:
        """Set fields of an instance (``webhook_events`` as a list).

        Raises :class:`NotFound`, or ``TypeError`` for a name that is not a field.
        """
        rec = self._instances.get(instance_id)
        if rec is None:
            raise NotFound(f"instance {instance_id} not found")
        self._instances[instance_id] = replace(rec, **_copied(values))

    async def delete_instance(self, instance_id: str) -> int | None:
        """Delete an instance (as :meth:`SqlStore.delete_instance`: finished items retired, send log
        kept); how many open items went with it (None: no such instance)."""
        def mine(key: tuple[str, ...]) -> bool:
            return key[0] == instance_id

        open_items = sum(1 for r in self._outbox.values() if r["instance_id"] == instance_id and r["status"] in _OPEN)
        self._outbox_retired += [dict(r) for r in self._outbox.values()
                                 if r["instance_id"] == instance_id and r["status"] not in _OPEN]
        self._outbox = {s: r for s, r in self._outbox.items() if r["instance_id"] != instance_id}
        self._events = {s: r for s, r in self._events.items() if r["instance_id"] != instance_id}
        self._polls = {k: v for k, v in self._polls.items() if not mine(k)}
        self._votes = {k: v for k, v in self._votes.items() if not mine(k)}
        self._inbound_seen = {k: v for k, v in self._inbound_seen.items() if not mine(k)}
        self._identities = {k: v for k, v in self._identities.items() if not mine(k)}
        self._numbers = {k: v for k, v in self._numbers.items() if not mine(k)}
        self._transitions = [x for x in self._transitions if x[0] != instance_id]
        self._restarts = [x for x in self._restarts if x[0] != instance_id]
        self._cloud_credentials.pop(instance_id, None)  # ON DELETE CASCADE in SQL
        self._chat_inbound = {k: v for k, v in self._chat_inbound.items() if not mine(k)}
        return open_items if self._instances.pop(instance_id, None) is not None else None

    async def record_transition(self, instance_id: str, *, from_state: str, to_state: str, reason: str | None,
                                now: int, events: Sequence[EventDraft] = (), **instance_values: Any) -> None:
        """Move an instance to ``to_state`` and store its webhook events in one step."""
        rec = self._instances.get(instance_id)
        if rec is not None:
            self._instances[instance_id] = replace(rec, state=to_state, state_since=now, state_reason=reason,
                                                   **instance_values)
        self._transitions.append((instance_id, Transition(now, from_state, to_state, reason)))
        self._add_events(events, now)

    async def transitions(self, instance_id: str, limit: int = 20) -> list[Transition]:
        """The most recent transitions, newest first."""
        mine = [tr for iid, tr in self._transitions if iid == instance_id]
        return mine[::-1][:limit]

    async def count_transitions_to(self, instance_id: str, to_state: str, since: int) -> int:
        """How many times the instance entered ``to_state`` since ``since`` (epoch ms)."""
        return sum(1 for iid, tr in self._transitions
                   if iid == instance_id and tr.to_state == to_state and tr.at > since)

    async def record_restart(self, instance_id: str, *, kind: str, reason: str | None, now: int) -> None:
        """Count one restart against the instance's budget."""
        self._restarts.append((instance_id, now))

    async def restarts_since(self, instance_id: str, since: int) -> list[int]:
        """Times (epoch ms, ascending) of restarts after ``since``."""
        return sorted(at for iid, at in self._restarts if iid == instance_id and at > since)


def _copied(values: dict[str, Any]) -> dict[str, Any]:
    """Values with their lists copied (the caller keeps no handle on stored state)."""
    return {k: list(v) if isinstance(v, list) else v for k, v in values.items()}
