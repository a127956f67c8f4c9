"""Nodes and instance leases in memory (as :mod:`wahub.store.sql.leases`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from wahub.domain.outbox import ItemStatus as St
from wahub.domain.outbox import OutboxItem
from wahub.store.memory.state import MemoryBase, Row, _item
from wahub.store.records import ClaimRound, LeaseRecord, NodeRecord

UNCERTAIN_ON_MOVE = ("the node that ran the instance stopped after handing the item to the engine; "
                     "delivery unknown")  # as the SQL store


def _lease(instance_id: str, row: Row) -> LeaseRecord:
    return LeaseRecord(instance_id=instance_id, owner=row["owner"], token=row["token"], expires_at=row["expires_at"])


class LeasesMemory(MemoryBase):
    """Nodes, leases, claims with recovery, renewals and in-process wake-ups."""

    _wake_listeners: list[Callable[[str], None]] | None = None

    async def heartbeat(self, node_id: str, *, address: str | None, capacity: int, now: int) -> None:
        """Register the node or refresh its heartbeat, address and capacity."""
        row = self._nodes.setdefault(node_id, {"started_at": now})
        row.update(address=address, capacity=capacity, heartbeat_at=now)

    async def claim_round(self, node_id: str, *, now: int, ttl_ms: int) -> ClaimRound:
        """Give every instance a lease row, then count instances, free leases, live nodes, owned."""
        for iid in self._instances:
            self._leases.setdefault(iid, {"owner": None, "token": 0, "expires_at": 0})
        free = sum(1 for r in self._leases.values() if r["owner"] is None or r["expires_at"] <= now)
        live = sum(1 for r in self._nodes.values() if r["heartbeat_at"] > now - ttl_ms)
        owned = sum(1 for r in self._leases.values() if r["owner"] == node_id and r["expires_at"] > now)
        return ClaimRound(instances=len(self._leases), free=free, live_nodes=max(1, live), owned=owned)

    async def claim_leases(self, node_id: str, *, now: int, ttl_ms: int,
                           limit: int) -> tuple[list[LeaseRecord], list[OutboxItem]]:
        """Take up to ``limit`` free or expired leases and recover their in-flight items."""
        claimed: list[LeaseRecord] = []
        for iid in sorted(self._leases):
            if len(claimed) >= limit:
                break
            row = self._leases[iid]
            if row["owner"] is None or row["expires_at"] <= now:
                row.update(owner=node_id, token=row["token"] + 1, expires_at=now + ttl_ms)
                claimed.append(_lease(iid, row))
        ids = {c.instance_id for c in claimed}
        for row in self._outbox.values():
            if row["instance_id"] not in ids or row["status"] != St.SENDING.value:
                continue
            if row["handed_over_at"] is None:
                row.update(status=St.QUEUED.value, updated_at=now)
            else:
                row.update(status=St.UNCERTAIN.value, updated_at=now, last_error=UNCERTAIN_ON_MOVE,
                           error_reason="uncertain")
                for entry in self._send_log:
                    if entry["queue_id"] == row["queue_id"] and entry["at"] < now:
                        entry["at"] = now
        if self._held_tokens is not None and node_id == self._fence_node:
            self._held_tokens.update({c.instance_id: c.token for c in claimed})
        uncertain = [_item(r) for r in self._outbox.values() if r["instance_id"] in ids
                     and r["status"] == St.UNCERTAIN.value and r.get("uncertain_reported_at") is None]
        return claimed, uncertain

    async def renew_leases(self, node_id: str, *, now: int, ttl_ms: int) -> list[LeaseRecord]:
        """Extend every lease the node holds; drops lost ones from the fence."""
        out = []
        for iid, row in sorted(self._leases.items()):
            if row["owner"] == node_id:
                row["expires_at"] = now + ttl_ms
                out.append(_lease(iid, row))
        if self._held_tokens is not None and node_id == self._fence_node:
            still = {le.instance_id: le.token for le in out}
            for iid, token in list(self._held_tokens.items()):
                if still.get(iid) != token:
                    del self._held_tokens[iid]
        return out

    async def release_leases(self, node_id: str, instance_ids: Sequence[str], *, leaving: bool = True) -> int:
        """Give leases up: free at once, tokens kept; ``leaving``: the node stops counting as live."""
        if leaving and node_id in self._nodes:
            self._nodes[node_id]["heartbeat_at"] = 0
        n = 0
        for iid in instance_ids:
            self.forget_lease(iid)
            row = self._leases.get(iid)
            if row is not None and row["owner"] == node_id:
                row.update(owner=None, expires_at=0)
                n += 1
        return n

    async def list_leases(self) -> list[LeaseRecord]:
        """Every lease row, by instance id."""
        return [_lease(iid, row) for iid, row in sorted(self._leases.items())]

    async def list_nodes(self) -> list[NodeRecord]:
        """Every registered node with the leases it holds now, by id."""
        return [NodeRecord(id=nid, address=r["address"], capacity=r["capacity"], heartbeat_at=r["heartbeat_at"],
                           started_at=r["started_at"],
                           owned=sum(1 for le in self._leases.values() if le["owner"] == nid))
                for nid, r in sorted(self._nodes.items())]

    async def due_on(self, node_id: str, now: int) -> list[str]:
        """Instances leased to the node with a queued item due at ``now``, by id."""
        mine = {iid for iid, le in self._leases.items() if le["owner"] == node_id}
        return sorted({r["instance_id"] for r in self._outbox.values() if r["instance_id"] in mine
                       and r["status"] == St.QUEUED.value and r["next_attempt_at"] <= now})

    async def wake_owner(self, instance_id: str) -> None:
        """Call this process's listeners."""
        for listener in list(self._wake_listeners or ()):
            listener(instance_id)

    async def listen_wakes(self, listener: Callable[[str], None]) -> None:
        """Register a listener of :meth:`wake_owner`."""
        if self._wake_listeners is None:
            self._wake_listeners = []
        if listener not in self._wake_listeners:
            self._wake_listeners.append(listener)
