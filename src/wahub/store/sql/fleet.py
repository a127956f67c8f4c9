"""Figures of many instances at once on SQL (fleet port): the dashboard's list and the metrics scrape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wahub.store import tables as t
from wahub.store.records import FleetFigures
from wahub.store.sql.connection import SqlBase


class FleetSql(SqlBase):
    """Aggregate reads over many instances (fleet port)."""

    async def fleet_figures(self, instance_ids: Sequence[str] | None, *, sent_since: int) -> dict[str, FleetFigures]:
        """Figures of many instances (None: all) in ONE statement: a UNION ALL of four grouped reads.

        Each branch is served by an index (``ix_outbox_claim``, ``ix_send_log_instance_at``,
        ``ix_events_pending``), so the cost grows with the rows of the asked instances, not with
        the number of statements: a page of 50 instances or a scrape of 1,000 is one round trip.
        """
        o, sl, ev = t.outbox.c, t.send_log.c, t.events.c
        none_ms = sa.cast(sa.null(), sa.BigInteger)

        def only(col: Any) -> list[Any]:
            return [] if instance_ids is None else [col.in_(list(instance_ids))]

        def tag(name: str) -> Any:
            return sa.literal_column(f"'{name}'")  # constant SQL text, never user input

        counts = (sa.select(o.instance_id, tag("item"), o.status, sa.func.count(), none_ms)
                  .where(*only(o.instance_id)).group_by(o.instance_id, o.status))
        oldest = (sa.select(o.instance_id, tag("oldest"), tag(""), sa.func.count(), sa.func.min(o.created_at))
                  .where(o.status.in_(("queued", "sending")), *only(o.instance_id)).group_by(o.instance_id))
        sent = (sa.select(sl.instance_id, tag("sent"), tag(""), sa.func.count(), none_ms)
                .where(sl.at > sent_since, *only(sl.instance_id)).group_by(sl.instance_id))
        events = (sa.select(ev.instance_id, tag("event"), ev.status, sa.func.count(), none_ms)
                  .where(ev.status.in_(("pending", "dead")), *only(ev.instance_id))
                  .group_by(ev.instance_id, ev.status))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.union_all(counts, oldest, sent, events))).all()
        acc: dict[str, dict[str, Any]] = {}
        for instance_id, src, key, n, at in rows:
            f = acc.setdefault(instance_id, {"by_status": {}, "oldest_open_at": None, "sent": 0,
                                             "events_pending": 0, "events_dead": 0})
            if src == "item":
                f["by_status"][key] = int(n)
            elif src == "oldest":
                f["oldest_open_at"] = int(at) if at is not None else None
            elif src == "sent":
                f["sent"] = int(n)
            else:
                f["events_pending" if key == "pending" else "events_dead"] = int(n)
        return {k: FleetFigures(**v) for k, v in acc.items()}
