"""Instance rows, transitions and restarts on SQL (instances and lifecycle ports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from wahub.domain.errors import Conflict, NotFound
from wahub.domain.outbox import ItemStatus as St
from wahub.store import tables as t
from wahub.store.records import (
    EventDraft,
    InstanceRecord,
    Transition,
    dump_json,
)
from wahub.store.sql.connection import (
    _instance,
)
from wahub.store.sql.fence import FenceSql

# Every outbox column but ``seq``: a retired item keeps its queue id, key, payload and outcome.
_RETIRED_COLUMNS = [c.name for c in t.outbox.columns if c.name != "seq"]
_FINISHED = (St.SENT.value, St.FAILED.value, St.CANCELED.value, St.UNCERTAIN.value)


class InstancesSql(FenceSql):
    """Instance rows, transitions and restarts on SQL (instances and lifecycle ports)."""

    # -- instances -------------------------------------------------------------------------------
    async def create_instance(self, *, id: str, name: str, webhook_url: str | None,
                              webhook_events: list[str], webhook_secret: str | None, now: int,
                              state: str = "initializing", engine: str = "whatsmeow",
                              default_country_code: str | None = None, typing_indicator_enabled: bool | None = None,
                              apply_typing_to: list[str] | None = None, limit_per_minute: int | None = None,
                              limit_per_hour: int | None = None, send_interval_ms: int | None = None,
                              ) -> InstanceRecord:
        """Insert an instance (with its optional send settings) and take back the finished items of an
        earlier instance with this id (see :meth:`delete_instance`). Raises :class:`Conflict` when the id exists."""
        try:
            async with self._tx() as conn:
                await conn.execute(t.instances.insert().values(
                    id=id, name=name, webhook_url=webhook_url, webhook_events=dump_json(webhook_events),
                    webhook_secret=webhook_secret, state=state, state_since=now, created_at=now, engine=engine,
                    default_country_code=default_country_code, typing_indicator_enabled=typing_indicator_enabled,
                    apply_typing_to=dump_json(apply_typing_to) if apply_typing_to is not None else None,
                    limit_per_minute=limit_per_minute, limit_per_hour=limit_per_hour,
                    send_interval_ms=send_interval_ms))
                retired = t.outbox_retired
                await conn.execute(t.outbox.insert().from_select(_RETIRED_COLUMNS, sa.select(
                    *(retired.c[name] for name in _RETIRED_COLUMNS)).where(
                    retired.c.instance_id == id).order_by(retired.c.seq)))
                await conn.execute(retired.delete().where(retired.c.instance_id == id))
        except IntegrityError as exc:
            raise Conflict(f"an instance with id {id!r} already exists", instanceId=id) from exc
        rec = await self.get_instance(id)
        assert rec is not None
        return rec

    async def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(t.instances.select().where(t.instances.c.id == instance_id))).first()
        return _instance(row) if row else None

    async def list_instances(self) -> list[InstanceRecord]:
        """Every instance, oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(t.instances.select().order_by(t.instances.c.created_at,
                                                                     t.instances.c.id))).all()
        return [_instance(r) for r in rows]

    async def update_instance(self, instance_id: str, **values: Any) -> None:
        """Set columns of an instance (``webhook_events``, ``apply_typing_to`` as lists). Raises :class:`NotFound`."""
        values = _columns(values)
        async with self._tx() as conn:
            res = await conn.execute(t.instances.update().where(t.instances.c.id == instance_id).values(**values))
        if res.rowcount == 0:
            raise NotFound(f"instance {instance_id} not found")

    async def delete_instance(self, instance_id: str) -> int | None:
        """Delete an instance and what is recorded for it, in one transaction.

        Its finished items (sent, failed, canceled, uncertain) move to ``outbox_retired`` and its send
        log stays, both until the retention purge: re-creating the id (:meth:`create_instance`) takes
        them back, so keys already used are replays and the rate windows hold across logout + create.

        Returns how many open (queued or sending) items were deleted with it, or None when there
        was no such instance.
        """
        async with self._tx() as conn:
            open_items = int((await conn.execute(sa.select(sa.func.count()).select_from(t.outbox).where(
                t.outbox.c.instance_id == instance_id,
                t.outbox.c.status.in_((St.QUEUED.value, St.SENDING.value))))).scalar_one())
            await conn.execute(t.outbox_retired.insert().from_select(_RETIRED_COLUMNS, sa.select(
                *(t.outbox.c[name] for name in _RETIRED_COLUMNS)).where(
                t.outbox.c.instance_id == instance_id, t.outbox.c.status.in_(_FINISHED)).order_by(t.outbox.c.seq)))
            # The send log stays (the retention purge removes it): a re-created id keeps its rate windows.
            for table in (t.outbox, t.events, t.polls, t.votes, t.inbound_seen, t.identities, t.number_ids,
                          t.transitions, t.restarts, t.cloud_credentials, t.cloud_chat_inbound):
                await conn.execute(table.delete().where(table.c.instance_id == instance_id))
            res = await conn.execute(t.instances.delete().where(t.instances.c.id == instance_id))
        self._fold_later([instance_id])  # its open-count changes now sum to 0: fold them away (no enqueue will)
        return open_items if res.rowcount else None

    async def record_transition(self, instance_id: str, *, from_state: str, to_state: str, reason: str | None,
                                now: int, events: Sequence[EventDraft] = (), **instance_values: Any) -> None:
        """Move an instance to ``to_state`` and store its webhook events in one transaction."""
        async with self._fenced_tx(instance_id) as conn:
            await conn.execute(t.instances.update().where(t.instances.c.id == instance_id).values(
                state=to_state, state_since=now, state_reason=reason, **instance_values))
            await conn.execute(t.transitions.insert().values(
                instance_id=instance_id, at=now, from_state=from_state, to_state=to_state, reason=reason))
            await self._add_events(conn, events, now)

    async def transitions(self, instance_id: str, limit: int = 20) -> list[Transition]:
        """The most recent transitions, newest first."""
        q = (sa.select(t.transitions).where(t.transitions.c.instance_id == instance_id)
             .order_by(t.transitions.c.id.desc()).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [Transition(r.at, r.from_state, r.to_state, r.reason) for r in rows]

    async def count_transitions_to(self, instance_id: str, to_state: str, since: int) -> int:
        """How many times the instance entered ``to_state`` since ``since`` (epoch ms)."""
        q = sa.select(sa.func.count()).select_from(t.transitions).where(
            t.transitions.c.instance_id == instance_id, t.transitions.c.to_state == to_state,
            t.transitions.c.at > since)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def record_restart(self, instance_id: str, *, kind: str, reason: str | None, now: int) -> None:
        """Count one restart against the instance's budget."""
        async with self._tx() as conn:
            await conn.execute(t.restarts.insert().values(instance_id=instance_id, at=now, kind=kind,
                                                          reason=reason))

    async def restarts_since(self, instance_id: str, since: int) -> list[int]:
        """Times (epoch ms, ascending) of restarts after ``since``."""
        q = (sa.select(t.restarts.c.at).where(t.restarts.c.instance_id == instance_id, t.restarts.c.at > since)
             .order_by(t.restarts.c.at))
        async with self.engine.connect() as conn:
            return [r[0] for r in (await conn.execute(q)).all()]


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Instance values as column values: the JSON lists serialised."""
    out = dict(values)
    for key in ("webhook_events", "apply_typing_to"):
        if out.get(key) is not None:
            out[key] = dump_json(out[key])
    return out
