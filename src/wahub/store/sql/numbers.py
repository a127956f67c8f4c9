"""Number resolutions on SQL (numbers port): what WhatsApp answered about a typed number."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from wahub.store import tables as t
from wahub.store.sql.connection import SqlBase
from wahub.store.sql.sendbatch import Statement

_n = t.number_ids.c
# On SQLite the send loop's question and answer go through the send-write batch (one call into the
# database thread shared with other instances' sends), with these statements.
_UPSERT = sqlite.insert(t.number_ids).values(instance_id=sa.bindparam("n_instance"), typed=sa.bindparam("n_typed"),
                                             resolved=sa.bindparam("n_resolved"), checked_at=sa.bindparam("n_at"))
_SQLITE_REMEMBER = Statement.of(_UPSERT.on_conflict_do_update(
    index_elements=["instance_id", "typed"],
    set_={"resolved": _UPSERT.excluded.resolved, "checked_at": _UPSERT.excluded.checked_at}))
_SQLITE_FIND = Statement.of(sa.select(_n.resolved, _n.checked_at).where(
    _n.instance_id == sa.bindparam("n_instance"), _n.typed == sa.bindparam("n_typed")))


def _find(conn: sqlite3.Connection, instance_id: str, typed: str) -> tuple[str | None, int] | None:
    row = _SQLITE_FIND.run(conn, {"n_instance": instance_id, "n_typed": typed}).fetchone()
    return (row[0], int(row[1])) if row is not None else None


class NumbersSql(SqlBase):
    """Number resolutions on SQL (numbers port)."""

    async def remember_number(self, instance_id: str, typed: str, resolved: str | None, *, now: int) -> None:
        """Store the answer for ``typed`` (the newest answer wins)."""
        if self._send_writes is not None:
            params = {"n_instance": instance_id, "n_typed": typed, "n_resolved": resolved, "n_at": now}
            await self._send_writes.run(lambda c: _SQLITE_REMEMBER.run(c, params).close())
            return
        stmt = self._insert(t.number_ids).values(instance_id=instance_id, typed=typed, resolved=resolved,
                                                 checked_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["instance_id", "typed"],
                                          set_={"resolved": stmt.excluded.resolved,
                                                "checked_at": stmt.excluded.checked_at})
        async with self._tx() as conn:
            await conn.execute(stmt)

    async def find_number(self, instance_id: str, typed: str) -> tuple[str | None, int] | None:
        """``(resolved, checked_at)`` for ``typed``, or None when never asked."""
        if self._send_writes is not None:
            return await self._send_writes.run(  # type: ignore[no-any-return]
                lambda c: _find(c, instance_id, typed))
        c = t.number_ids.c
        stmt = sa.select(c.resolved, c.checked_at).where(c.instance_id == instance_id, c.typed == typed)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return (row.resolved, int(row.checked_at)) if row is not None else None
