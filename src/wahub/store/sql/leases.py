"""Nodes and instance leases on SQL (PostgreSQL in production; the same statements run on SQLite
for the contract suite). See :mod:`wahub.store.sql.fence` for how writes are fenced."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from wahub.domain.outbox import ItemStatus as St
from wahub.domain.outbox import OutboxItem
from wahub.store import tables as t
from wahub.store.records import ClaimRound, LeaseRecord, NodeRecord
from wahub.store.sql.connection import _item
from wahub.store.sql.fence import FenceSql

log = structlog.get_logger("wahub.leases")

WAKE_CHANNEL = "wahub_wake"
UNCERTAIN_ON_MOVE = ("the node that ran the instance stopped after handing the item to the engine; "
                     "delivery unknown")
SESSION_PREFIX = "wa-hub "  # + node id: the application_name of a node's sessions (PostgreSQL)
END_WAIT_MS = 2_000  # how long a claimer waits for a session it ended to be gone, its locks released

# The open transactions of gone nodes' sessions (by name), ended where this role may end them; each
# answer comes once the session is gone or after :wait ms. A session of a role this one is not a member
# of cannot be ended from here, and PostgreSQL hides whether it is in a transaction (``xact_start`` is
# NULL for it without pg_read_all_stats): it is listed with ``ended`` NULL.
_END_SESSIONS = sa.text(
    "SELECT pid, application_name AS name, CASE WHEN pg_has_role(usesysid, 'MEMBER') "
    "THEN pg_terminate_backend(pid, :wait) END AS ended FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = ANY(:names) "
    "AND (xact_start IS NOT NULL OR NOT pg_has_role(usesysid, 'MEMBER'))")
NAME_BYTES = 63  # PostgreSQL keeps this much of an application_name (NAMEDATALEN - 1)


def session_name(node_id: str) -> str:
    """The ``application_name`` of a node's PostgreSQL sessions: ``wa-hub <node id>``.

    An id too long for PostgreSQL's 63 bytes keeps its head and ends in ``~`` and 12 hex digits of a
    hash of the whole id, so two long ids that share their head never share a name."""
    name = SESSION_PREFIX + node_id
    if len(name.encode()) <= NAME_BYTES:
        return name
    digest = hashlib.blake2b(node_id.encode(), digest_size=6).hexdigest()
    head = name.encode()[:NAME_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


def _lease(row: Any) -> LeaseRecord:
    return LeaseRecord(instance_id=row.instance_id, owner=row.owner, token=int(row.token),
                       expires_at=int(row.expires_at))


class LeasesSql(FenceSql):
    """Nodes, leases, claims with recovery, renewals, and the wake-up channel between nodes."""

    _wake_listeners: list[Callable[[str], None]] | None = None
    _listen_conn: Any = None
    _naming_sessions = False

    def fence_as(self, node_id: str, *, on_lost: Callable[[str], None] | None = None) -> None:
        """Fence writes by this node's leases; on PostgreSQL also name its sessions after it
        (:func:`session_name`), so that another node can end them once this one is gone
        (:meth:`_end_sessions_of_gone_nodes`)."""
        super().fence_as(node_id, on_lost=on_lost)
        if not self.is_sqlite and not self._naming_sessions:
            for engine in (self.engine, self.writer):
                sa.event.listen(engine.sync_engine, "checkout", self._name_session)
            self._naming_sessions = True

    def _name_session(self, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """Pool checkout: name the session after this node, once per connection (one round trip)."""
        if self._fence_node is None:
            return
        name = session_name(self._fence_node)
        if record.info.get("wahub_session_name") == name:
            return
        import asyncpg

        try:
            dbapi_conn.run_async(lambda raw: raw.execute("SELECT set_config('application_name', $1, false)", name))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The pool drops a connection whose checkout raised this, and connects anew.
            raise sa.exc.DisconnectionError("the session could not be named") from exc
        record.info["wahub_session_name"] = name

    async def heartbeat(self, node_id: str, *, address: str | None, capacity: int, now: int) -> None:
        """Register the node or refresh its heartbeat (epoch ms), address and capacity."""
        stmt = self._insert(t.nodes).values(id=node_id, address=address, capacity=capacity, heartbeat_at=now,
                                            started_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={
            "address": address, "capacity": capacity, "heartbeat_at": now})
        async with self._tx() as conn:
            await conn.execute(stmt)

    async def claim_round(self, node_id: str, *, now: int, ttl_ms: int) -> ClaimRound:
        """Give every instance a lease row (free), then count instances, free leases, live nodes, owned."""
        le, i = t.leases, t.instances
        missing = sa.select(i.c.id, sa.null(), sa.literal(0, sa.BigInteger), sa.literal(0, sa.BigInteger)).where(
            ~sa.exists().where(le.c.instance_id == i.c.id))
        counts = sa.select(
            sa.select(sa.func.count()).select_from(le).scalar_subquery(),
            sa.select(sa.func.count()).select_from(le).where(
                sa.or_(le.c.owner.is_(None), le.c.expires_at <= now)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(t.nodes).where(t.nodes.c.heartbeat_at > now - ttl_ms)
            .scalar_subquery(),
            sa.select(sa.func.count()).select_from(le).where(le.c.owner == node_id, le.c.expires_at > now)
            .scalar_subquery())
        async with self._tx() as conn:
            await conn.execute(self._insert(le).from_select(["instance_id", "owner", "token", "expires_at"], missing)
                               .on_conflict_do_nothing(index_elements=["instance_id"]))
            total, free, live, owned = (await conn.execute(counts)).one()
        return ClaimRound(instances=int(total), free=int(free), live_nodes=max(1, int(live)), owned=int(owned))

    async def claim_leases(self, node_id: str, *, now: int, ttl_ms: int,
                           limit: int) -> tuple[list[LeaseRecord], list[OutboxItem]]:
        """Take up to ``limit`` free or expired leases and recover their in-flight items, in one transaction.

        A free lease whose row another transaction locks is passed by (``SKIP LOCKED``): the old
        owner's fenced write in progress, which the claim must not overtake. When the pick came up short
        with such leases left, the sessions of gone nodes are ended (:meth:`_end_sessions_of_gone_nodes`),
        so the next claim round finds those rows unlocked.
        """
        if limit <= 0:
            return [], []
        le = t.leases
        free = sa.or_(le.c.owner.is_(None), le.c.expires_at <= now)
        pick = (sa.select(le.c.instance_id).where(free).order_by(le.c.instance_id).limit(limit)
                .with_for_update(skip_locked=True))
        claimed: list[LeaseRecord] = []
        uncertain: list[OutboxItem] = []
        async with self._tx() as conn:
            ids = list((await conn.execute(pick)).scalars().all())
            if ids:
                rows = (await conn.execute(le.update().where(le.c.instance_id.in_(ids), free).values(
                    owner=node_id, token=le.c.token + 1, expires_at=now + ttl_ms).returning(*le.c))).all()
                claimed = [_lease(r) for r in rows]
                uncertain = await self._recover(conn, [c.instance_id for c in claimed], now)
            # Every unlocked free row was taken (fewer than the limit), yet some are still free: locked.
            passed = (not self.is_sqlite and len(ids) < limit
                      and bool((await conn.execute(sa.select(sa.exists().where(free)))).scalar()))
        if self._held_tokens is not None and node_id == self._fence_node:
            self._held_tokens.update({c.instance_id: c.token for c in claimed})
        if passed:
            await self._end_sessions_of_gone_nodes(node_id, now=now, ttl_ms=ttl_ms)
        return claimed, uncertain

    async def _end_sessions_of_gone_nodes(self, node_id: str, *, now: int, ttl_ms: int) -> None:
        """End the transactions of every node that is not live any more: heartbeat ``ttl_ms`` old at ``now``
        and no lease of its own still valid. Never this node's sessions, nor those of a live node's name.

        Why: a free lease is passed by while a transaction locks its row. That is normally the old
        owner's fenced write, which ends by itself, or one it left idle, which PostgreSQL ends after the
        idle-in-transaction timeout (one TTL). A node stopped (SIGSTOP, a frozen VM, a starved process)
        between asyncpg's Parse/Describe/Flush and its Bind/Execute/Sync leaves its backend *active*,
        reading from the client: no server timeout covers that state, so the row stays locked, and the
        lease unclaimed, for as long as the node is stopped. A node that is not live holds no valid
        lease, and a transaction ended lands none of its writes (the fence's rule: a write lands before
        the claim or not at all), so ending its transactions is safe; their locks go with them. Sessions
        are told apart by name (:func:`session_name`); a session of a role this one is not a member of
        cannot be ended and is logged (``gone_node_sessions_not_ended``). ``pg_terminate_backend`` with a
        wait needs PostgreSQL 14 or later. A failure here is logged, never raised: the leases this call
        claimed stand.

        Not covered: a node restarted under the same id while its old process is still stopped. The id is
        live again, so the old process's sessions are not ended; the lease its write locks is free only
        once the old process runs again (or is killed).
        """
        n, le = t.nodes, t.leases
        # Gone: no heartbeat for a TTL, and no lease of its own still valid (a renewal commits its leases
        # before it writes the heartbeat: in between, a node whose leases are valid may look stale).
        valid_lease = sa.exists().where(le.c.owner == n.c.id, le.c.expires_at > now)
        try:
            async with self.engine.connect() as conn:
                nodes = (await conn.execute(sa.select(n.c.id, sa.and_(n.c.heartbeat_at <= now - ttl_ms,
                                                                      ~valid_lease)))).all()
                live = {session_name(r[0]) for r in nodes if not r[1]} | {session_name(node_id)}
                gone = sorted({session_name(r[0]) for r in nodes if r[1]} - live)
                if not gone:
                    return
                rows = (await conn.execute(_END_SESSIONS, {"names": gone, "wait": END_WAIT_MS})).all()
        except (sa.exc.DBAPIError, OSError):
            log.warning("gone_node_sessions_not_ended", node=node_id, exc_info=True)
            return
        ended = [{"pid": r.pid, "name": r.name, "gone": bool(r.ended)} for r in rows if r.ended is not None]
        refused = [{"pid": r.pid, "name": r.name} for r in rows if r.ended is None]
        if ended:
            log.warning("gone_node_sessions_ended", node=node_id, sessions=ended)
        if refused:
            log.warning("gone_node_sessions_not_ended", node=node_id, sessions=refused,
                        reason="their database role is not one this node's role is a member of")

    @staticmethod
    async def _recover(conn: AsyncConnection, instance_ids: Sequence[str], now: int) -> list[OutboxItem]:
        """The start-up recovery of :meth:`OutboxSql.recover_in_flight`, for the instances just claimed:
        returns their uncertain items whose report is not stored yet."""
        o = t.outbox
        if not instance_ids:
            return []
        ids = list(instance_ids)
        await conn.execute(o.update().where(o.c.instance_id.in_(ids), o.c.status == St.SENDING.value,
                                            o.c.handed_over_at.is_(None)).values(status=St.QUEUED.value,
                                                                                 updated_at=now))
        rows = (await conn.execute(o.update().where(o.c.instance_id.in_(ids), o.c.status == St.SENDING.value)
                                   .values(status=St.UNCERTAIN.value, updated_at=now, last_error=UNCERTAIN_ON_MOVE,
                                           error_reason="uncertain").returning(*o.c))).all()
        items = sorted((_item(r) for r in rows), key=lambda it: it.seq)
        if items:  # it may have left at any time up to now: the windows count it as of now
            sl = t.send_log
            await conn.execute(sl.update().where(sl.c.queue_id.in_([it.queue_id for it in items]),
                                                 sl.c.at < now).values(at=now))
        # Every uncertain item not reported yet (these, and any whose report the old owner never stored).
        rows = (await conn.execute(o.select().where(o.c.instance_id.in_(ids), o.c.status == St.UNCERTAIN.value,
                                                    o.c.uncertain_reported_at.is_(None)).order_by(o.c.seq))).all()
        return [_item(r) for r in rows]

    async def renew_leases(self, node_id: str, *, now: int, ttl_ms: int) -> list[LeaseRecord]:
        """Extend every lease the node holds, in ONE statement; drops lost ones from the fence."""
        le = t.leases
        before = dict(self._held_tokens or {})
        async with self._tx() as conn:
            rows = (await conn.execute(le.update().where(le.c.owner == node_id).values(expires_at=now + ttl_ms)
                                       .returning(*le.c))).all()
        leases = [_lease(r) for r in rows]
        if self._held_tokens is not None and node_id == self._fence_node:
            # Only tokens held before the statement ran, and unchanged since: a lease this node claimed
            # while the renewal was in flight is missing from its answer without being lost.
            still = {le_.instance_id: le_.token for le_ in leases}
            for iid, token in before.items():
                if still.get(iid) != token and self._held_tokens.get(iid) == token:
                    del self._held_tokens[iid]
        return leases

    async def release_leases(self, node_id: str, instance_ids: Sequence[str], *, leaving: bool = True) -> int:
        """Give leases up: free at once (expiry 0), tokens kept. ``leaving`` (a clean stop): the node stops
        counting as live at once too, so the others' fair shares take all of them in their next round."""
        for iid in instance_ids:
            self.forget_lease(iid)
        le = t.leases
        async with self._tx() as conn:
            if leaving:
                await conn.execute(t.nodes.update().where(t.nodes.c.id == node_id).values(heartbeat_at=0))
            if not instance_ids:
                return 0
            res = await conn.execute(le.update().where(le.c.owner == node_id, le.c.instance_id.in_(list(instance_ids)))
                                     .values(owner=None, expires_at=0))
        return int(res.rowcount)

    async def list_leases(self) -> list[LeaseRecord]:
        """Every lease row, by instance id."""
        async with self.engine.connect() as conn:
            return [_lease(r) for r in (await conn.execute(t.leases.select().order_by(t.leases.c.instance_id)))]

    async def list_nodes(self) -> list[NodeRecord]:
        """Every registered node with the leases it holds now, by id."""
        n, le = t.nodes, t.leases
        owned = sa.select(sa.func.count()).select_from(le).where(le.c.owner == n.c.id).scalar_subquery()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(n, owned.label("owned")).order_by(n.c.id))).all()
        return [NodeRecord(id=r.id, address=r.address, capacity=int(r.capacity), heartbeat_at=int(r.heartbeat_at),
                           started_at=int(r.started_at), owned=int(r.owned)) for r in rows]

    async def due_on(self, node_id: str, now: int) -> list[str]:
        """Instances leased to the node with a queued item due at ``now``, by id."""
        o, le = t.outbox, t.leases
        q = (sa.select(o.c.instance_id).distinct().join(le, le.c.instance_id == o.c.instance_id)
             .where(le.c.owner == node_id, o.c.status == St.QUEUED.value, o.c.next_attempt_at <= now)
             .order_by(o.c.instance_id))
        async with self.engine.connect() as conn:
            return [str(r[0]) for r in (await conn.execute(q)).all()]

    async def wake_owner(self, instance_id: str) -> None:
        """``NOTIFY`` the instance's owner (PostgreSQL); on SQLite, this process's listeners."""
        if self.is_sqlite:
            for listener in list(self._wake_listeners or ()):
                listener(instance_id)
            return
        async with self._tx() as conn:  # delivered at commit
            await conn.execute(sa.select(sa.func.pg_notify(WAKE_CHANNEL, instance_id)))

    async def listen_wakes(self, listener: Callable[[str], None]) -> None:
        """``LISTEN`` on a connection of its own (PostgreSQL); on SQLite, in-process. Calling it again with
        the same listener adds nothing, and opens the connection again if the server closed it."""
        if self._wake_listeners is None:
            self._wake_listeners = []
        if listener not in self._wake_listeners:
            self._wake_listeners.append(listener)
        if self.is_sqlite or (self._listen_conn is not None and not self._listen_conn.is_closed()):
            return
        import asyncpg

        dsn = "postgresql://" + self.url.split("://", 1)[1]
        self._listen_conn = await asyncpg.connect(dsn)

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            for fn in list(self._wake_listeners or ()):
                fn(payload)

        await self._listen_conn.add_listener(WAKE_CHANNEL, on_notify)

    async def close(self) -> None:
        """Close the ``LISTEN`` connection, then everything else."""
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            try:
                await conn.close(timeout=2)
            except Exception:  # noqa: BLE001 - closing anyway
                conn.terminate()
        await super().close()
