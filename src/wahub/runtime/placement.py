"""Placement: what this node runs and what it only shows, when several nodes share one PostgreSQL.

Every node keeps a runtime for every instance so that any node answers the API. The instances
whose lease this node holds (:class:`~wahub.runtime.leases.Leases`) run here: engine, supervisor,
send loop, webhook lane. The others are views refreshed from the database each lease period
(state, settings, owner); their send loop is a :class:`RemoteSendLoop`, so an enqueue here stores
the item and wakes the owner through ``LISTEN/NOTIFY``. Engine-bound calls on them are refused
with the owner named (:meth:`Placement.must_run_here`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from wahub.domain import ladder
from wahub.domain.clock import Clock
from wahub.domain.errors import Conflict
from wahub.domain.lifecycle import State
from wahub.domain.outbox import OutboxItem
from wahub.runtime.leases import LeasePolicy, Leases
from wahub.runtime.registry import InstanceRuntime, Registry
from wahub.runtime.sendloop import SendLoop
from wahub.store.base import InstancesPort, LeasesPort
from wahub.store.records import InstanceRecord, NodeRecord

log = structlog.get_logger("wahub.placement")


class RemoteSendLoop(SendLoop):
    """The send loop of an instance another node runs: never sends; a poke wakes the owner."""

    wake_owner: Callable[[str], None] | None = None

    def start(self) -> None:
        """Nothing runs here."""

    def poke(self, due_at: int | None = None) -> None:
        """An item was enqueued or released here: tell the owner."""
        if self.wake_owner is not None:
            self.wake_owner(self.link.id)


class Placement:
    """Runs this node's share of the instances and keeps a view of the others."""

    def __init__(self, store: Any, clock: Clock, policy: LeasePolicy, registry: Registry, *,
                 add_runtime: Callable[[InstanceRecord, bool], InstanceRuntime], forget: Callable[[str], None],
                 after_uncertain: Callable[[InstanceRuntime, OutboxItem], None],
                 notify_lane: Callable[[str], None], spawn: Callable[[Any], asyncio.Task[Any]],
                 auto_resume: bool, boot_concurrency: int, metrics_registry: Any = None) -> None:
        self.store: LeasesPort = store
        self.instances_store: InstancesPort = store
        self.clock = clock
        self.policy = policy
        self.registry = registry
        self.add_runtime = add_runtime
        self.forget = forget
        self.after_uncertain = after_uncertain
        self.notify_lane = notify_lane
        self.spawn = spawn
        self.auto_resume = auto_resume
        self._boots = asyncio.Semaphore(max(1, boot_concurrency))
        self.leases = Leases(store, clock, policy, adopt=self._adopt, drop=self._drop, sync=self.sync,
                             registry=metrics_registry)
        self.addresses: dict[str, str] = {}  # node id -> NODE_ADDRESS, refreshed with the views
        self._waking: dict[str, bool] = {}  # instance id -> another wake asked for while one is in flight

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.policy.node_id

    def runs_here(self, instance_id: str) -> bool:
        """Whether this node holds the instance's lease."""
        return instance_id in self.leases.owned

    def must_run_here(self, rt: InstanceRuntime) -> None:
        """Refuse an engine-bound call for an instance another node runs: Conflict naming the owner."""
        if rt.id in self.leases.owned:
            return
        owner = rt.owner
        where = f"node {owner}" if owner else "no node yet (waiting for a node to claim it)"
        raise Conflict(f"instance {rt.id} runs on {where}; ask that node", owner=owner,
                       ownerAddress=self.addresses.get(owner) if owner else None)

    async def start(self) -> None:
        """Load every instance as a view, listen for wake-ups, and start claiming."""
        for rec in await self.instances_store.list_instances():
            self._remote(rec)
        await self.store.listen_wakes(self._on_wake)
        await self.leases.start()

    async def halt(self) -> None:
        """Stop claiming and renewing (shutdown: the send loops already drained)."""
        await self.leases.halt()

    async def give_up(self) -> None:
        """Give every lease up (shutdown, after the engines stopped): other nodes take them at once."""
        await self.leases.give_up()

    async def created(self, rec: InstanceRecord) -> InstanceRuntime:
        """A new instance was stored here: a view that waits for a claim (every node's claim round runs now).

        This node's own claim round may have claimed and started the instance already, between the
        row's commit and this call: then the runtime that runs it is the answer, left as it is.
        """
        rt = self._remote(rec)
        self.leases.poke()
        await self.store.wake_owner(rec.id)
        return self.registry.get(rec.id) or rt

    def _on_wake(self, instance_id: str) -> None:
        rt = self.registry.get(instance_id)
        if instance_id in self.leases.owned and rt is not None:
            if not isinstance(rt.sendloop, RemoteSendLoop):  # being adopted: its own loop starts soon
                rt.sendloop.poke()
        elif rt is None:
            self.leases.poke()  # an instance created on another node: claim round now

    def _remote(self, rec: InstanceRecord, owner: str | None = None) -> InstanceRuntime:
        """A view of an instance run elsewhere (replaces any view of it here).

        The runtime of an instance this node runs is never replaced: it is returned as it is. A view
        put in its place would leave the engine started by the claim unreachable (or, when the
        claim's boot had not begun, never started) while the lease, renewed each period, keeps every
        other node from running it: ``initializing`` for good, on every node.
        """
        running = self.registry.get(rec.id)
        if rec.id in self.leases.owned and running is not None and not isinstance(running.sendloop, RemoteSendLoop):
            return running
        rt = self.add_runtime(rec, False)
        loop = RemoteSendLoop(rt, rt.sendloop.store, self.clock, rt.sendloop.policy, rt.sendloop.limits,
                              rt.sendloop.outcomes, rt.sendloop.rng)
        loop.wake_owner = self._wake_owner
        rt.sendloop = loop
        rt.owner = owner
        rt.lease_valid = lambda: False
        return rt

    def _wake_owner(self, instance_id: str) -> None:
        """Coalesced: a burst of enqueues for one instance sends one ``NOTIFY`` while one is in flight."""
        if instance_id in self._waking:
            self._waking[instance_id] = True  # wake again once the one in flight is sent
            return
        self._waking[instance_id] = False
        self.spawn(self._notify(instance_id))

    async def _notify(self, instance_id: str) -> None:
        try:
            while True:
                try:
                    await self.store.wake_owner(instance_id)
                except Exception:  # the owner's sweep (sync) finds the item within one lease period
                    log.warning("wake_owner_failed", instance_id=instance_id)
                if not self._waking.get(instance_id):
                    return
                self._waking[instance_id] = False
        finally:
            self._waking.pop(instance_id, None)

    async def _adopt(self, instance_id: str, uncertain: list[OutboxItem]) -> None:
        """The lease was just claimed: run the instance here (its in-flight items already recovered)."""
        rec = await self.instances_store.get_instance(instance_id)
        if rec is None:
            return
        old = self.registry.get(instance_id)
        if old is not None:
            old.watch.stop()
            await old.supervisor.shutdown()
        rt = self.add_runtime(rec, True)
        rt.owner = self.node_id
        rt.lease_valid = self.leases.valid
        for item in uncertain:
            self.after_uncertain(rt, item)
        self.notify_lane(instance_id)
        if ladder.may_restore(State(rec.state), rec.restricted_until, self.clock.now_ms(), self.auto_resume):
            self.spawn(self._boot(rt))

    async def _boot(self, rt: InstanceRuntime) -> None:
        async with self._boots:
            if self.registry.get(rt.id) is not rt or rt.id not in self.leases.owned:
                return
            try:
                await rt.supervisor.boot("lease claimed")
                await rt.supervisor.settled.wait()
            except Exception:
                log.exception("boot_after_claim_failed", instance_id=rt.id)

    async def _drop(self, instance_id: str, why: str) -> None:
        """The lease is gone: stop the engine and the send loop now, keep a view."""
        rt = self.registry.get(instance_id)
        if rt is not None:
            rt.lease_valid = lambda: False
            rt.watch.stop()
            await rt.supervisor.shutdown()
        rec = await self.instances_store.get_instance(instance_id)
        if instance_id in self.leases.owned or self.registry.get(instance_id) is not rt:
            return  # claimed again meanwhile: the runtime adopted since is the one that runs
        if rec is None:
            self.registry.pop(instance_id, None)
            self.forget(instance_id)
            return
        self._remote(rec)

    async def sync(self) -> None:
        """Refresh the views from the database: new and deleted instances, states, settings, owners."""
        records = await self.instances_store.list_instances()
        self.addresses = {n.id: n.address for n in await self.store.list_nodes() if n.address}
        now = self.clock.now_ms()
        owners = {le.instance_id: le.owner for le in await self.store.list_leases()
                  if le.owner is not None and le.expires_at > now}
        seen = set()
        for rec in records:
            seen.add(rec.id)
            rt = self.registry.get(rec.id)
            if rec.id in self.leases.owned and (rt is None or isinstance(rt.sendloop, RemoteSendLoop)):
                # Held by this node, yet nothing runs it here (its adoption failed, or a view took its
                # place): nobody else may run it while the lease is renewed, so run it now.
                log.warning("owned_instance_not_running", instance_id=rec.id)
                try:
                    await self._adopt(rec.id, [])
                except Exception:  # the next round tries again
                    log.exception("lease_adopt_failed", instance_id=rec.id)
                continue
            if rec.id in self.leases.owned and rt is not None:
                rt.record = rec  # settings changed through another node apply here
                continue
            if rt is None:
                rt = self._remote(rec)
            else:
                rt.record, rt.state, rt.state_since, rt.state_reason = rec, State(rec.state), rec.state_since, \
                    rec.state_reason
                rt.phone, rt.push_name, rt.last_error = rec.phone, rec.push_name, rec.last_error
                rt.restricted_until = rec.restricted_until
            rt.owner = owners.get(rec.id)
        for iid in [i for i in self.registry if i not in seen and i not in self.leases.owned]:
            self.registry.pop(iid, None)
            self.forget(iid)
        await self.store.listen_wakes(self._on_wake)  # listening again if the server closed the connection
        for iid in await self.store.due_on(self.node_id, now):  # a wake-up lost with a LISTEN connection
            rt = self.registry.get(iid)
            if iid in self.leases.owned and rt is not None and not isinstance(rt.sendloop, RemoteSendLoop):
                rt.sendloop.poke()

    async def nodes(self) -> list[NodeRecord]:
        """Every node on the database with the leases it holds."""
        return await self.store.list_nodes()
