"""The leases room: which instances this node runs when several nodes share one PostgreSQL.

Every instance has a lease row (owner node, expiry, fencing token). Each period (``TTL / 3``) the
node renews all its leases in one statement, refreshes its heartbeat, and claims free or expired
leases up to its fair share: ``ceil(instances / live nodes)``, never more than its capacity, so a
cold start spreads the fleet and a dead node's instances are shared by the survivors. A claim
recovers the instance's in-flight items in the same transaction (handed over → ``uncertain``)
and the new owner's send loop reads the send history from the store, so limits hold across the move.

Safety does not rest on clocks. The store fences every write that matters by ``(owner, token)``
(:mod:`wahub.store.sql.fence`): a node that lost a lease cannot claim, record a send or change a
state. The engine call itself cannot be fenced by the database, so the send loop also checks,
with no await before the call, that the node's leases are still surely valid
(:meth:`Leases.valid`: the instant before the last successful renewal plus the TTL, on this
node's clock); a node paused past its lease wakes up with that check failing. When a lease is
lost (renewal answer, refused write, or validity lapsed) the instance's engine and send loop are
stopped at once (:attr:`Leases.drop`). See ``docs/scaling.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from wahub.domain.clock import Clock
from wahub.domain.outbox import OutboxItem
from wahub.runtime.clock import sleep_or_wake
from wahub.store.base import LeasesPort

log = structlog.get_logger("wahub.leases")

MB = 1024 * 1024
WORKER_BYTES = 70 * MB  # a whatsmeow worker's resident memory (measured ~68 MB), for the default capacity


def default_capacity(meminfo: str = "/proc/meminfo") -> int:
    """Instances this machine can run: 80 % of its memory over a whatsmeow worker's (at least 1)."""
    try:
        with open(meminfo, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    return max(1, int(total * 0.8) // WORKER_BYTES)
    except (OSError, ValueError):
        pass
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return max(1, int(pages * os.sysconf("SC_PAGE_SIZE") * 0.8) // WORKER_BYTES) if pages else 100


@dataclass(frozen=True)
class LeasePolicy:
    """This node's identity and lease settings (ms)."""

    node_id: str
    address: str | None
    capacity: int
    ttl_ms: int

    @property
    def period_ms(self) -> int:
        """How often leases are renewed and claims made: a third of the TTL."""
        return max(1, self.ttl_ms // 3)


def fair_share(instances: int, live_nodes: int, capacity: int) -> int:
    """How many instances a node should hold: its share of the fleet, capped by its capacity."""
    return min(capacity, math.ceil(instances / max(1, live_nodes)))


Adopt = Callable[[str, list[OutboxItem]], Awaitable[None]]
Drop = Callable[[str, str], Awaitable[None]]



class Leases:
    """Claims, renews and gives up this node's leases; tells the hub what to start and stop.

    ``adopt(instance_id, uncertain_items)`` starts an instance just claimed; ``drop(instance_id,
    why)`` stops one whose lease is gone; ``sync()`` refreshes the view of instances run elsewhere.
    """

    def __init__(self, store: LeasesPort, clock: Clock, policy: LeasePolicy, *, adopt: Adopt, drop: Drop,
                 sync: Callable[[], Awaitable[None]], registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.adopt = adopt
        self.drop = drop
        self.sync = sync
        self.owned: set[str] = set()
        self.valid_until = 0  # this node's clock (ms): every lease it holds is surely valid before it
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dropping: set[asyncio.Task[None]] = set()
        self._claim_pending = False  # a claim statement is in flight
        node = policy.node_id
        self._owned_gauge = Gauge("wahub_node_instances_owned", "Instances this node holds a lease of", ["node"],
                                  registry=registry).labels(node)
        self._capacity_gauge = Gauge("wahub_node_capacity", "Instances this node may hold", ["node"],
                                     registry=registry).labels(node)
        self._claims = Counter("wahub_node_lease_claims_total", "Leases this node claimed", ["node"],
                               registry=registry).labels(node)
        self._lost = Counter("wahub_node_leases_lost_total", "Leases this node lost (another node took them)",
                             ["node"], registry=registry).labels(node)
        self._capacity_gauge.set(policy.capacity)

    def valid(self) -> bool:
        """Whether this node's leases are surely still its own (no await: the send loop's last check)."""
        return self.clock.now_ms() < self.valid_until

    def poke(self) -> None:
        """Run a claim round now (an instance was created here or elsewhere)."""
        self._wake.set()

    async def start(self) -> None:
        """Register the node, fence the store's writes as this node, and start renewing and claiming."""
        # Live first: the store names this node's sessions once fenced, and a claimer ends the open
        # transactions of a node that is not live (a restart under the id of a node gone a while ago).
        await self.store.heartbeat(self.policy.node_id, address=self.policy.address, capacity=self.policy.capacity,
                                   now=self.clock.now_ms())
        self.store.fence_as(self.policy.node_id, on_lost=self._on_fenced)
        # Renewal runs on its own: a long claim round (starting a hundred instances) never delays it.
        self._tasks = [asyncio.ensure_future(self._renew_loop()), asyncio.ensure_future(self._claim_loop())]

    async def halt(self) -> None:
        """Stop claiming and renewing (shutdown: call after the send loops drained)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in [*tasks, *self._dropping]:  # a drop in progress finishes stopping its instance
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def give_up(self) -> None:
        """Give every lease up (shutdown, after the engines stopped): free for other nodes at once."""
        await self.halt()
        owned = sorted(self.owned)
        self.owned.clear()
        self._owned_gauge.set(0)
        try:
            given = await self.store.release_leases(self.policy.node_id, owned)
        except Exception:  # noqa: BLE001 - they expire by themselves after the TTL
            log.warning("leases_not_given_up", node=self.policy.node_id, count=len(owned))
        else:
            log.info("leases_given_up", node=self.policy.node_id, count=given)

    def _on_fenced(self, instance_id: str) -> None:
        """A write was refused: stop the instance now (from the store's fence)."""
        self._lose(instance_id, "a write was refused: another node holds the lease")

    def _lose(self, instance_id: str, why: str) -> None:
        """Stop running an instance whose lease is gone: no write for it from now on; engine and loop stop."""
        if instance_id not in self.owned:
            return
        self.owned.discard(instance_id)
        self.store.forget_lease(instance_id)
        self._lost.inc()
        self._owned_gauge.set(len(self.owned))
        log.warning("lease_lost", node=self.policy.node_id, instance_id=instance_id, reason=why)
        task = asyncio.ensure_future(self._drop(instance_id, why))
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)

    async def _drop(self, instance_id: str, why: str) -> None:
        try:
            await self.drop(instance_id, why)
        except Exception:
            log.exception("lease_drop_failed", instance_id=instance_id)

    async def _renew_loop(self) -> None:
        while True:
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease_renewal_failed", node=self.policy.node_id)
            await self.clock.sleep(self.policy.period_ms)

    async def renew(self) -> None:
        """Renew every lease in one statement and refresh the heartbeat; stop what was lost."""
        node, ttl = self.policy.node_id, self.policy.ttl_ms
        started = self.clock.now_ms()
        if self.owned and started >= self.valid_until:
            # Paused or cut off past the TTL: another node may run these by now. Stop them all; a claim
            # round takes back whatever is still free (with recovery).
            for iid in sorted(self.owned):
                self._lose(iid, "lease validity lapsed on this node (paused or store unreachable)")
        before = set(self.owned)
        renewed = await self.store.renew_leases(node, now=started, ttl_ms=ttl)
        self.valid_until = started + ttl
        held = {le.instance_id for le in renewed}
        # Only a lease held before the statement ran can be missing from its answer for being lost; one
        # the claim loop took while the renewal was in flight is not in the answer yet.
        for iid in sorted((before & self.owned) - held):
            self._lose(iid, "another node claimed the lease")
        stray = sorted(held - self.owned)  # ours in the database, not run here: give back
        if stray and not self._claim_pending:
            await self.store.release_leases(node, stray, leaving=False)
        # The heartbeat carries the renewal's instant: a node stops counting as live exactly when its
        # leases expire, so the survivors' fair share grows in the same claim round that finds them free.
        await self.store.heartbeat(node, address=self.policy.address, capacity=self.policy.capacity, now=started)

    async def _claim_loop(self) -> None:
        # One period before the first claim: nodes started together see each other's heartbeat, so
        # the first one up does not take the whole fleet.
        await self._pause(self.policy.period_ms)
        while True:
            try:
                await self.claim()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease_claim_failed", node=self.policy.node_id)
            await self._pause(self.policy.period_ms)

    async def _pause(self, ms: int) -> None:
        await sleep_or_wake(self.clock, ms, self._wake)
        self._wake.clear()

    async def claim(self) -> None:
        """One claim round: take free leases up to the fair share, start them, refresh the views."""
        node, ttl = self.policy.node_id, self.policy.ttl_ms
        now = self.clock.now_ms()
        if not self.valid():
            return  # renewal has not confirmed this node yet (paused, store unreachable)
        figures = await self.store.claim_round(node, now=now, ttl_ms=ttl)
        # The share is measured by what the database says this node holds, not by self.owned: what this
        # node runs may lag behind (a lease held but not run yet is given back by the next renewal).
        want = fair_share(figures.instances, figures.live_nodes, self.policy.capacity) - figures.owned
        if want > 0 and figures.free > 0:
            self._claim_pending = True  # a renewal meanwhile must not give back what this claim takes
            try:
                claimed, uncertain = await self.store.claim_leases(node, now=now, ttl_ms=ttl, limit=want)
                for lease in claimed:
                    self.owned.add(lease.instance_id)
                    self._claims.inc()
            finally:
                self._claim_pending = False
            if claimed:
                log.info("leases_claimed", node=node, count=len(claimed), owned=len(self.owned))
            for lease in claimed:
                if lease.instance_id not in self.owned:
                    continue  # lost again meanwhile
                mine = [it for it in uncertain if it.instance_id == lease.instance_id]
                try:
                    await self.adopt(lease.instance_id, mine)
                except Exception:
                    log.exception("lease_adopt_failed", instance_id=lease.instance_id)
        self._owned_gauge.set(len(self.owned))
        await self.sync()
