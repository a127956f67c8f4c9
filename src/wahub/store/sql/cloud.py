"""Cloud API instances on SQL: sealed credentials and each chat's last inbound time (cloud port)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from wahub.domain.errors import Conflict, NotFound
from wahub.store import tables as t
from wahub.store.records import CloudCredentials
from wahub.store.sql.connection import SqlBase


class CloudSql(SqlBase):
    """Sealed credentials and the service-window clock of cloud instances."""

    async def put_cloud_credentials(self, instance_id: str, *, sealed: str, phone_number_id: str, now: int) -> None:
        """Store (or replace) an instance's sealed credentials. Raises Conflict (number taken) / NotFound."""
        c = t.cloud_credentials
        try:
            async with self._tx() as conn:
                exists = (await conn.execute(sa.select(t.instances.c.id).where(
                    t.instances.c.id == instance_id))).first()
                if exists is None:
                    raise NotFound(f"instance {instance_id} not found")
                stmt = self._insert(c).values(instance_id=instance_id, sealed=sealed, phone_number_id=phone_number_id,
                                              updated_at=now)
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[c.c.instance_id],
                    set_={"sealed": sealed, "phone_number_id": phone_number_id, "updated_at": now}))
        except IntegrityError as exc:
            raise Conflict(f"phone number id {phone_number_id} belongs to another instance",
                           phoneNumberId=phone_number_id) from exc

    async def get_cloud_credentials(self, instance_id: str) -> CloudCredentials | None:
        """The instance's sealed credentials, or None."""
        c = t.cloud_credentials
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(c).where(c.c.instance_id == instance_id))).first()
        if row is None:
            return None
        m = row._mapping
        return CloudCredentials(instance_id=m["instance_id"], sealed=m["sealed"],
                                phone_number_id=m["phone_number_id"], updated_at=m["updated_at"])

    async def note_chat_inbound(self, instance_id: str, chat_id: str, at: int) -> None:
        """Record that ``chat_id`` wrote at ``at``; the newer time wins (one upsert)."""
        w = t.cloud_chat_inbound
        stmt = self._insert(w).values(instance_id=instance_id, chat_id=chat_id, last_inbound_at=at)
        greatest = sa.case((stmt.excluded.last_inbound_at > w.c.last_inbound_at, stmt.excluded.last_inbound_at),
                           else_=w.c.last_inbound_at)
        async with self._tx() as conn:
            await conn.execute(stmt.on_conflict_do_update(index_elements=[w.c.instance_id, w.c.chat_id],
                                                          set_={"last_inbound_at": greatest}))

    async def last_chat_inbound(self, instance_id: str, chat_id: str) -> int | None:
        """When ``chat_id`` last wrote to the instance (epoch ms), or None."""
        w = t.cloud_chat_inbound
        q = sa.select(w.c.last_inbound_at).where(w.c.instance_id == instance_id, w.c.chat_id == chat_id)
        async with self.engine.connect() as conn:
            value = (await conn.execute(q)).scalar_one_or_none()
        return int(value) if value is not None else None
