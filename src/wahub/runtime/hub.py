"""The hub: owns the instances, their engines, send loops and supervisors, and the dispatcher.

The API and the dashboard talk only to :class:`Hub`. Everything durable goes through the store;
in-memory state here is a cache of it plus the running tasks.
"""

from __future__ import annotations

import asyncio
import functools
import random
import socket
from typing import Any

import structlog

from wahub.config import Settings
from wahub.domain import ladder, ratelimit, webhookurl
from wahub.domain.clock import Clock
from wahub.domain.errors import InvalidInput, NotFound
from wahub.domain.lifecycle import State
from wahub.domain.outbox import (
    ItemStatus,
    OutboxItem,
)
from wahub.engines import base as eng
from wahub.engines.base import EngineFactory
from wahub.observability import Metrics
from wahub.runtime import urlguard
from wahub.runtime.cloud import CloudRoom
from wahub.runtime.degraded import DegradedWatch
from wahub.runtime.directory import DirectoryRoom
from wahub.runtime.eventhold import EventHold
from wahub.runtime.events import Events
from wahub.runtime.hookclient import HookClient, HttpxPoster
from wahub.runtime.inbound import Inbound
from wahub.runtime.instances import Instances
from wahub.runtime.leases import LeasePolicy, default_capacity
from wahub.runtime.media import MediaSource
from wahub.runtime.outbox import InstanceOutcomes, Outbox, limits_for
from wahub.runtime.placement import Placement
from wahub.runtime.registry import InstanceRuntime, Registry
from wahub.runtime.resolve import Resolver
from wahub.runtime.sandboxport import SandboxControl
from wahub.runtime.sendactions import SendActions
from wahub.runtime.sendloop import ClaimTimes, SendLoop, SendPolicy
from wahub.runtime.storehealth import StoreHealth
from wahub.runtime.supervisor import LifecyclePolicy, Supervisor
from wahub.runtime.webhooks import Dispatcher, DispatchPolicy, Target
from wahub.store.base import Store
from wahub.store.records import EventRecord, FleetFigures, InstanceRecord, NodeRecord, PollRecord, VoteRecord

log = structlog.get_logger("wahub.hub")
ENGINES = ("sandbox", "whatsmeow", "cloud")



class Hub:
    """Composition of store, engines, send loops, supervisors and webhook dispatcher."""

    def __init__(self, settings: Settings, store: Store, engine_factory: EngineFactory, *,
                 clock: Clock, rng: random.Random | None = None, sandbox: SandboxControl | None = None,
                 http_client: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.engine_factory = engine_factory
        self.clock = clock
        self.rng = rng or random.Random()
        self.sandbox = sandbox  # the simulated WhatsApp's controls, None with a real engine
        self.metrics = Metrics()
        self.store_health = StoreHealth(clock, self.metrics)
        store.watch_faults(self.store_health.report)
        self.instances = Registry()
        self.url_guard = urlguard.UrlGuard(webhookurl.parse_policy(settings.webhook_allowed_networks))
        self.dispatcher = Dispatcher(
            store, clock,
            DispatchPolicy(timeout_ms=settings.webhook_timeout_ms, base_ms=settings.webhook_retry_base_ms,
                           max_ms=settings.webhook_retry_max_ms, max_attempts=settings.webhook_max_attempts,
                           max_in_flight_per_url=settings.webhook_max_in_flight_per_url,
                           auth_token=settings.webhook_auth_token,
                           protection_bypass=settings.webhook_protection_bypass),
            self._target_for, rng=self.rng, on_attempt=self.metrics.webhook_attempt, owns=self.runs_here,
            client=HttpxPoster(http_client) if http_client is not None else HookClient(self.url_guard.policy))
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        self.uncertain_at_boot: list[OutboxItem] = []
        self.events = Events(store, clock, self.dispatcher.notify)
        self.outbox = Outbox(settings, store, clock, self.events, self.metrics, self.instances, self._spawn)
        self.inbound = Inbound(store, store, clock, self.events, self.outbox)
        self.send_actions = SendActions(
            self.outbox, store, self.instances,
            MediaSource(self.url_guard.policy, max_bytes=settings.media_max_bytes,
                        mime_types=settings.media_mime_types.split(","), timeout_ms=settings.media_fetch_timeout_ms),
            action_timeout_ms=settings.engine_action_timeout_ms,
            download_max_bytes=settings.media_download_max_bytes,
            allow_status_broadcast=settings.allow_status_broadcast)
        self.cloud = CloudRoom(store, store, clock, self.instances, self.events, self.inbound,
                               credentials_key=settings.cloud_credentials_key)
        self.cloud_webhooks = self.cloud.receiver  # the /cloud/{id}/webhook route's port
        self.outbox.screen = self.cloud
        self.admin = Instances(store, clock, self.instances, engine_factory, add_runtime=self._add_runtime,
                               notify=self.dispatcher.notify, forget=self._forget, url_guard=self.url_guard,
                               allow_status_broadcast=settings.allow_status_broadcast)
        self.directory = DirectoryRoom(self.instances, timeout_ms=settings.read_timeout_ms)
        self.resolver = Resolver(store, clock, ttl_ms=settings.resolve_cache_seconds * 1000,
                                 timeout_ms=settings.read_timeout_ms)
        self.node_id = settings.node_id or f"{socket.gethostname()}-{settings.port}"
        self.node_address = settings.node_address or f"http://{settings.host}:{settings.port}"
        self.placement: Placement | None = None  # several nodes (leases): which instances run here
        if settings.leases_on:
            policy = LeasePolicy(node_id=self.node_id, address=self.node_address,
                                 capacity=settings.node_capacity or default_capacity(),
                                 ttl_ms=int(settings.node_lease_ttl_seconds * 1000))
            self.placement = Placement(
                store, clock, policy, self.instances,
                add_runtime=lambda rec, boot: self._add_runtime(rec, booting=boot), forget=self._forget,
                after_uncertain=self.outbox.after_uncertain, notify_lane=self.dispatcher.notify,
                spawn=self._spawn, auto_resume=settings.restricted_auto_resume,
                boot_concurrency=settings.restore_concurrency, metrics_registry=self.metrics.registry)
            self.admin.start_new = self.placement.created
            self.instances.must_run_here = self.placement.must_run_here
        self.lifecycle_policy = LifecyclePolicy.from_settings(settings)
        self.send_policy = SendPolicy(max_attempts=settings.max_send_attempts,
                                      retry_base_ms=settings.retry_base_backoff_ms,
                                      retry_max_ms=settings.retry_max_backoff_ms, jitter_ms=settings.send_jitter_ms,
                                      typing=settings.typing_indicator_enabled,
                                      claim_times=ClaimTimes(settings.send_claim_lead_ms))
        self.metrics.claim_lead.set_function(lambda: self.send_policy.claim_times.lead_ms(self.clock.now_ms()))

    # -- start / stop ----------------------------------------------------------------------------
    async def start(self, *, restore: bool = True) -> None:
        """Migrate, recover in-flight items, load instances, start delivery, restore engines.

        With leases (several nodes) nothing is recovered or restored here: each instance is recovered
        and started by the node that claims it (:class:`Placement`).
        """
        await self.store.migrate()
        if self.placement is not None:
            await self.placement.start()
            await self.dispatcher.start()
            self._started = True
            self._spawn(self._purge_loop())
            return
        latest = await self.store.latest_send_at()
        if latest is not None:  # a wall clock stepped back across a restart costs at most one interval
            self.clock.raise_floor(latest)
        now = self.clock.now_ms()
        requeued, uncertain = await self.store.recover_in_flight(now)
        for rec in await self.store.list_instances():
            self._add_runtime(rec, booting=True)
        for item in uncertain:
            rt = self.instances.get(item.instance_id)
            if rt is not None:
                self.outbox.after_uncertain(rt, item)
        self.uncertain_at_boot = uncertain
        if requeued or uncertain:
            log.warning("recovered_in_flight", requeued=requeued, uncertain=len(uncertain))
        await self.dispatcher.start()
        self._started = True
        self._spawn(self._purge_loop())
        if restore:
            self._spawn(self.admin.restore_all(self.settings.restore_stagger_ms, self.settings.restricted_auto_resume,
                                               self.settings.restore_concurrency))

    def begin_shutdown(self) -> None:
        """The process was told to stop (SIGTERM): refuse new sends (503), end media fetches in progress,
        and let no send loop take another item (the web server's own shutdown comes first, ~0.1–0.2 s,
        before :meth:`stop` drains them)."""
        self.outbox.accepting = False
        self.outbox.stopping.set()
        for rt in list(self.instances.values()):
            rt.sendloop.stop_taking()

    async def stop(self) -> None:
        """Stop gracefully: refuse new sends (503), let engine calls in flight finish (at most
        ``SHUTDOWN_GRACE_MS``), then stop engines, loops and delivery; the store keeps the rest."""
        self.outbox.accepting = False
        await asyncio.gather(*(rt.sendloop.drain(self.settings.shutdown_grace_ms)
                               for rt in list(self.instances.values())), return_exceptions=True)
        log.info("shutdown_drained", instances=len(self.instances))
        if self.placement is not None:
            await self.placement.halt()
        background = list(self._background)
        for task in background:
            task.cancel()
        # Wait for them: a task cancelled mid-query must not outlive the store (its database
        # thread would answer into a closed event loop).
        await asyncio.gather(*background, return_exceptions=True)
        for rt in list(self.instances.values()):
            rt.watch.stop()
            await rt.supervisor.shutdown()
        if self.placement is not None:
            await self.placement.give_up()
        await self.dispatcher.close()
        await self.engine_factory.close()
        await self.store.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _forget(self, instance_id: str) -> None:
        """Drop what lives outside the store for a deleted instance (sandbox phone, metrics, lane)."""
        if self.sandbox is not None:
            self.sandbox.forget(instance_id)
        self.metrics.forget(instance_id)
        self.dispatcher.forget(instance_id)
        self.inbound.forget(instance_id)
        self.cloud.forget(instance_id)
        self.resolver.forget(instance_id)

    def _add_runtime(self, rec: InstanceRecord, *, booting: bool = False) -> InstanceRuntime:
        """The runtime of an instance row. At a process start (``booting``) no engine runs yet, so a
        running state read from the store is shown as ``initializing`` until the engine reports again."""
        state = State(rec.state)
        reason = rec.state_reason
        if booting and ladder.may_restore(state, rec.restricted_until, self.clock.now_ms(), False):
            state, reason = State.INITIALIZING, "process start: waiting for the engine"
        rt = InstanceRuntime(record=rec, state=state, state_since=rec.state_since if state.value == rec.state
                             else self.clock.now_ms(), state_reason=reason, phone=rec.phone, push_name=rec.push_name,
                             last_error=rec.last_error, restricted_until=rec.restricted_until)
        rt.watch = DegradedWatch(rt, self.clock, self.events, self.metrics,
                                 after_sends=self.settings.degraded_after_sends,
                                 after_ms=int(self.settings.degraded_after_minutes * 60_000))
        rt.sendloop = SendLoop(rt, self.store, self.clock, self.send_policy,
                               lambda: limits_for(self.settings, rt.record), _WatchedOutcomes(self.outbox, rt),
                               self.rng, resolve=functools.partial(self._resolve, rec.id))
        hold = EventHold(rec.id, self.clock, self.metrics)
        rt.supervisor = Supervisor(rt, self.store, self.clock, self.lifecycle_policy, self.events,
                                   self.engine_factory, self.metrics, on_transition=self.on_transition,
                                   data_events=self._data_events, hold=hold)
        self.instances[rec.id] = rt
        self.metrics.set_state(rec.id, rt.state.value, [s.value for s in State])
        return rt

    async def _resolve(self, instance_id: str, engine: eng.Engine, chat_id: str, ask: bool) -> str:
        return await self.resolver.resolve(instance_id, engine, chat_id, ask=ask)

    async def _data_events(self, rt: InstanceRuntime, event: eng.EngineEvent) -> bool:
        """Data events go to the inbound room; any receipt also tells the degraded watch the session lives."""
        if isinstance(event, eng.Receipt):
            rt.watch.receipt()
        return await self.inbound.on_event(rt, event)

    async def _purge_loop(self) -> None:
        interval = int(self.settings.purge_interval_minutes * 60_000)
        while True:
            await self.clock.sleep(interval)
            try:
                await self.purge()
            except Exception:
                log.exception("purge_failed")

    async def purge(self) -> dict[str, int]:
        """Delete records older than ``IDEMPOTENCY_RETENTION_DAYS`` (runs periodically)."""
        cutoff = self.clock.now_ms() - int(self.settings.idempotency_retention_days * 86_400_000)
        removed = await self.store.purge(cutoff)
        log.info("purged", **removed)
        return removed

    @property
    def started(self) -> bool:
        """True once start-up recovery finished and delivery runs."""
        return self._started

    async def refresh_gauges(self) -> None:
        """Update queue gauges from the store (called before a metrics scrape)."""
        now = self.clock.now_ms()
        figures = await self.store.fleet_figures(None, sent_since=now)  # one statement for the whole fleet
        statuses = [s.value for s in ItemStatus]
        for rt in list(self.instances.values()):
            stats = figures.get(rt.id) or FleetFigures()
            self.metrics.set_queue(rt.id, stats.by_status, statuses,
                                   (now - stats.oldest_open_at) / 1000 if stats.oldest_open_at else 0)

    # -- nodes -----------------------------------------------------------------------------------
    def runs_here(self, instance_id: str) -> bool:
        """Whether this node runs the instance (always, with one node)."""
        return self.placement is None or self.placement.runs_here(instance_id)

    def run_here(self, instance_id: str) -> InstanceRuntime:
        """The runtime of an instance this node runs. Raises NotFound, or Conflict naming the node that runs it."""
        rt = self.get(instance_id)
        if self.placement is not None:
            self.placement.must_run_here(rt)
        return rt

    def running(self) -> list[str]:
        """Ids of the instances this node runs, sorted (with one node: all)."""
        return sorted(self.instances if self.placement is None else self.placement.leases.owned)

    def owner_of(self, rt: InstanceRuntime) -> str | None:
        """The id of the node running the instance (None: no node holds it right now)."""
        return self.node_id if self.placement is None else rt.owner

    async def nodes(self) -> list[NodeRecord]:
        """The nodes serving this database (with one node: this one, holding every instance)."""
        if self.placement is not None:
            return await self.placement.nodes()
        now = self.clock.now_ms()
        return [NodeRecord(id=self.node_id, address=self.node_address, capacity=len(self.instances),
                           heartbeat_at=now, started_at=now, owned=len(self.instances))]

    # -- instances -------------------------------------------------------------------------------
    def get(self, instance_id: str) -> InstanceRuntime:
        """The runtime of an instance. Raises :class:`NotFound`."""
        return self.instances.get_rt(instance_id)

    async def create_instance(self, name: str, webhook_url: str | None, events: list[str] | None,
                              webhook_secret: str | None = None, settings: dict[str, Any] | None = None, *,
                              engine: Any = None, cloud: Any = None,
                              limits: dict[str, int | None] | None = None) -> InstanceRuntime:
        """Create and start an instance (see :meth:`Instances.create`) driven by ``engine``
        (default ``WAHUB_ENGINE``) with its send ``settings`` (API names); ``cloud`` holds a cloud
        instance's credentials (never logged); ``limits`` its own rate limits (column names).

        Raises InvalidInput naming the field (unknown engine, bad credentials, no credentials key).
        """
        engine = self.engine_choice(engine)
        save = None
        if engine == "cloud":
            account = self.cloud.parse(cloud)

            async def save(instance_id: str) -> None:
                await self.cloud.save(instance_id, account)
        elif cloud is not None:
            raise InvalidInput('cloud is only for engine "cloud"')
        return await self.admin.create(name, webhook_url, events, webhook_secret, settings, engine=engine,
                                       limits=limits, after_insert=save)

    def engine_choice(self, engine: Any) -> str:
        """The engine a new instance asked for (None: ``WAHUB_ENGINE``). Raises InvalidInput naming the
        engines this hub offers."""
        default: str = getattr(self.engine_factory, "default", self.settings.engine)
        engine = default if engine is None else engine
        offers = getattr(self.engine_factory, "offers", lambda e: e == default)
        if not isinstance(engine, str) or engine not in ENGINES or not offers(engine):
            known = [e for e in ENGINES if offers(e)]
            raise InvalidInput(f"engine must be one of {', '.join(known)} (default {default})")
        return engine

    async def replace_cloud_credentials(self, instance_id: str, cloud: Any) -> InstanceRuntime:
        """Store new credentials for a cloud instance (e.g. a renewed token); the engine reads them at
        its next start. Raises NotFound, InvalidInput (not a cloud instance, bad field) or Conflict."""
        rt = self.get(instance_id)
        if rt.record.engine != "cloud":
            raise InvalidInput(f'cloud is only for engine "cloud"; instance {rt.id} runs {rt.record.engine}')
        await self.cloud.save(rt.id, self.cloud.parse(cloud))
        return rt

    async def update_instance(self, instance_id: str, **changes: Any) -> InstanceRuntime:
        """Change name, webhook settings, per-instance limits or send settings (see :meth:`Instances.update`)."""
        return await self.admin.update(instance_id, **changes)

    async def delete_instance(self, instance_id: str) -> int | None:
        """Log out, stop and delete an instance; open items deleted with it, None if unknown (see
        :meth:`Instances.delete`)."""
        return await self.admin.delete(instance_id)

    async def logout(self, instance_id: str) -> InstanceRuntime:
        """End the WhatsApp session; the instance and its queue stay."""
        self.run_here(instance_id)
        return await self.admin.logout(instance_id)

    async def restart(self, instance_id: str, kind: str) -> InstanceRuntime:
        """Explicit restart (``soft`` | ``hard``), counted against the budget; returns at once."""
        self.run_here(instance_id)
        return await self.admin.restart(instance_id, kind)

    async def request_pairing_code(self, instance_id: str, phone: str) -> str:
        """Pairing code for phone-number login. Raises InvalidInput or EngineError."""
        self.run_here(instance_id)
        return await self.admin.request_pairing_code(instance_id, phone)

    async def is_registered(self, instance_id: str, contact: Any) -> bool:
        """Whether a number is on WhatsApp (needs a ready instance)."""
        self.run_here(instance_id)
        return await self.admin.is_registered(instance_id, contact)

    async def poll_votes(self, instance_id: str, message_id: str) -> tuple[PollRecord | None, list[VoteRecord]]:
        """A poll wa-hub sent (None when unknown) and every voter's latest vote. Raises NotFound."""
        return await self.inbound.poll_votes(self.get(instance_id), message_id)

    async def store_reachable(self) -> bool:
        """True when the database answers and no write is failing (see :class:`StoreHealth`)."""
        return self.store_health.fault is None and await self.store.ping()

    def limits_for(self, rec: InstanceRecord) -> ratelimit.Limits:
        """Effective limits of an instance (its overrides, else the settings)."""
        return limits_for(self.settings, rec)

    def on_transition(self, rt: InstanceRuntime, src: State, dst: State) -> None:
        """Side effects of a recorded transition: send loop and metrics."""
        self.metrics.set_state(rt.id, dst.value, [s.value for s in State])
        if dst == State.READY:
            rt.sendloop.start()
            rt.sendloop.poke()
        elif src == State.READY:
            rt.sendloop.poke()  # the loop sees the state and stops after any in-flight send

    # -- webhooks --------------------------------------------------------------------------------
    def _target_for(self, instance_id: str) -> Target | None:
        rt = self.instances.get(instance_id)
        if rt is None:
            return None
        return Target(url=rt.record.webhook_url, secret=rt.record.webhook_secret or self.settings.webhook_secret)

    async def replay_events(self, instance_id: str, event_id: str | None) -> int:
        """Put dead letters back for delivery; returns how many."""
        rt = self.get(instance_id)
        n = await self.store.replay_events(rt.id, event_id=event_id, now=self.clock.now_ms())
        if event_id is not None and n == 0:
            raise NotFound(f"no dead letter {event_id} on instance {rt.id}")
        self.dispatcher.replayed(rt.id)
        return n

    async def list_events(self, instance_id: str, status: str | None = None, limit: int = 50,
                          offset: int = 0) -> list[EventRecord]:
        """Webhook events of an instance, newest first (``pending`` | ``delivered`` | ``dead``). Raises NotFound."""
        rt = self.get(instance_id)
        return await self.store.list_events(rt.id, status=status, limit=limit, offset=offset)

    # -- fleet view (dashboard list: one aggregate read per page) ---------------------------------
    async def fleet_summaries(self, instance_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """List figures of many instances (None: all) from ONE aggregate store read; unknown ids are left out.

        Shape per id: ``{"depth", "uncertain", "sent1h", "byStatus", "oldestQueuedAt" (epoch ms | None),
        "deadLetters", "webhookBacklog", "webhookFailing", "lastError", "degraded"
        ({since, reason} | None)}``. ``webhookFailing`` follows
        the same rule as the status document's ``webhook.failing``.
        """
        now = self.clock.now_ms()
        wanted = list(self.instances) if instance_ids is None else instance_ids
        figures = await self.store.fleet_figures(instance_ids, sent_since=now - ratelimit.HOUR_MS)
        out: dict[str, dict[str, Any]] = {}
        for iid in wanted:
            rt = self.instances.get(iid)
            if rt is None:
                continue
            f = figures.get(iid) or FleetFigures()
            health = self.dispatcher.health(iid)
            out[iid] = {"depth": f.depth, "uncertain": f.by_status.get(ItemStatus.UNCERTAIN.value, 0),
                        "sent1h": f.sent, "byStatus": f.by_status, "oldestQueuedAt": f.oldest_open_at,
                        "deadLetters": f.events_dead, "webhookBacklog": f.events_pending,
                        "webhookFailing": health is not None and health.consecutive_failures > 0,
                        "lastError": rt.last_error, "degraded": rt.watch.state}
        return out

    async def get_event(self, instance_id: str, event_id: str) -> EventRecord:
        """One webhook event (payload, attempts, last response) of an instance. Raises NotFound."""
        rt = self.get(instance_id)
        ev = await self.store.get_event(rt.id, event_id)
        if ev is None:
            raise NotFound(f"no webhook event {event_id} on instance {rt.id}")
        return ev


class _WatchedOutcomes(InstanceOutcomes):
    """The outbox's outcomes, also telling the instance's degraded watch about every accepted send."""

    async def sent(self, item: OutboxItem, message_id: str, at: int) -> None:
        """The engine accepted the item at instant ``at`` (epoch ms)."""
        await super().sent(item, message_id, at)
        await self.rt.watch.sent(at)
