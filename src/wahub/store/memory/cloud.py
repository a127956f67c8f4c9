"""Cloud API instances in memory: sealed credentials and each chat's last inbound time."""

from __future__ import annotations

from wahub.domain.errors import Conflict, NotFound
from wahub.store.memory.state import MemoryBase
from wahub.store.records import CloudCredentials


class CloudMemory(MemoryBase):
    """The cloud port of the fake, with the SQL constraints (one instance per phone number id)."""

    async def put_cloud_credentials(self, instance_id: str, *, sealed: str, phone_number_id: str, now: int) -> None:
        """Store (or replace) an instance's sealed credentials. Raises Conflict (number taken) / NotFound."""
        if instance_id not in self._instances:
            raise NotFound(f"instance {instance_id} not found")
        if any(c.phone_number_id == phone_number_id and c.instance_id != instance_id
               for c in self._cloud_credentials.values()):
            raise Conflict(f"phone number id {phone_number_id} belongs to another instance",
                           phoneNumberId=phone_number_id)
        self._cloud_credentials[instance_id] = CloudCredentials(instance_id, sealed, phone_number_id, now)

    async def get_cloud_credentials(self, instance_id: str) -> CloudCredentials | None:
        """The instance's sealed credentials, or None."""
        return self._cloud_credentials.get(instance_id)

    async def note_chat_inbound(self, instance_id: str, chat_id: str, at: int) -> None:
        """Record that ``chat_id`` wrote at ``at``; the newer time wins."""
        key = (instance_id, chat_id)
        self._chat_inbound[key] = max(at, self._chat_inbound.get(key, at))

    async def last_chat_inbound(self, instance_id: str, chat_id: str) -> int | None:
        """When ``chat_id`` last wrote to the instance (epoch ms), or None."""
        return self._chat_inbound.get((instance_id, chat_id))
