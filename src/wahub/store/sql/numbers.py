"""Number resolutions on SQL (numbers port): what WhatsApp answered about a typed number."""

from __future__ import annotations

import sqlalchemy as sa

from wahub.store import tables as t
from wahub.store.sql.connection import SqlBase


class NumbersSql(SqlBase):
    """Number resolutions on SQL (numbers port)."""

    async def remember_number(self, instance_id: str, typed: str, resolved: str | None, *, now: int) -> None:
        """Store the answer for ``typed`` (the newest answer wins)."""
        stmt = self._insert(t.number_ids).values(instance_id=instance_id, typed=typed, resolved=resolved,
                                                 checked_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["instance_id", "typed"],
                                          set_={"resolved": stmt.excluded.resolved,
                                                "checked_at": stmt.excluded.checked_at})
        async with self._tx() as conn:
            await conn.execute(stmt)

    async def find_number(self, instance_id: str, typed: str) -> tuple[str | None, int] | None:
        """``(resolved, checked_at)`` for ``typed``, or None when never asked."""
        c = t.number_ids.c
        stmt = sa.select(c.resolved, c.checked_at).where(c.instance_id == instance_id, c.typed == typed)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return (row.resolved, int(row.checked_at)) if row is not None else None
