"""Fencing on SQL: the writes that matter check, in their own transaction, that this node still
holds the instance's lease under the token it claimed.

The check is ``SELECT … FROM leases WHERE instance_id = :i AND owner = :node AND token = :token
FOR SHARE`` as the first statement of the write's transaction. The share lock is held until the
write commits, so a claim by another node (an ``UPDATE`` of that row) waits for it; a write that
starts after such a claim committed finds no row and is refused (:class:`Fenced`), nothing written.
Either the write lands before the new token exists, or it does not land: the next owner's recovery
always sees every write of the previous one. Without :meth:`FenceSql.fence_as` (one node, SQLite)
no check runs and the transaction is the plain one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from wahub.store import tables as t
from wahub.store.base import Fenced
from wahub.store.heldleases import HeldLeases
from wahub.store.sql.connection import SqlBase

_le = t.leases
_FENCE = (sa.select(_le.c.token).where(_le.c.instance_id == sa.bindparam("f_instance"),
                                       _le.c.owner == sa.bindparam("f_owner"), _le.c.token == sa.bindparam("f_token"))
          .with_for_update(read=True))  # built once: every fenced write runs it


class FenceSql(HeldLeases, SqlBase):
    """This node's leases as the store knows them, and the fenced transaction."""

    @asynccontextmanager
    async def _fenced_tx(self, instance_id: str) -> AsyncIterator[AsyncConnection]:
        """A write transaction for ``instance_id``; raises :class:`Fenced` (nothing written) when this
        node no longer holds its lease."""
        async with self._tx() as conn:
            if self._fence_node is not None:
                await self._check_fence(conn, instance_id)
            yield conn

    @asynccontextmanager
    async def _fenced_item_tx(self, column: sa.Column[object], value: object) -> AsyncIterator[AsyncConnection]:
        """:meth:`_fenced_tx` for the instance of the outbox item whose ``column`` is ``value``."""
        if self._fence_node is None:
            async with self._tx() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            instance_id = (await conn.execute(sa.select(t.outbox.c.instance_id).where(column == value))).scalar()
        async with self._fenced_tx(str(instance_id)) as conn:
            yield conn

    async def _check_fence(self, conn: AsyncConnection, instance_id: str) -> None:
        token = (self._held_tokens or {}).get(instance_id)
        if token is None:
            self._refused(instance_id)
        row = (await conn.execute(_FENCE, {"f_instance": instance_id, "f_owner": self._fence_node,
                                           "f_token": token})).first()
        if row is None:
            self._refused(instance_id)

    def _refused(self, instance_id: str) -> None:
        self.forget_lease(instance_id)
        if self._on_fenced is not None:
            self._on_fenced(instance_id)
        raise Fenced(instance_id)
