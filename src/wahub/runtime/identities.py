"""One identity per person: the hidden-number id (``…@lid``) and the phone id (``…@c.us``) of a user.

WhatsApp names many users by a ``@lid`` and tells the phone behind it only now and then (an
inbound message or a vote carrying both). Every such pair is remembered per instance in the store,
so a later event under either id can name the other one (``fromAlt``, ``voterPhone``) and votes
under both ids count as one voter's.

A bounded in-process map of the ids already looked up (pairs, and ids without a known pair) saves
the store a write per message of a known person and a read per message; it is only a shortcut,
valid because pairs are learnt only here (one process per database) and dropped with the instance.
"""

from __future__ import annotations

from collections import OrderedDict

import structlog

from wahub.domain import votes
from wahub.domain.clock import Clock
from wahub.store.base import InboundPort

log = structlog.get_logger("wahub.identities")

CACHE_SIZE = 10_000
"""Pairs kept in memory (both directions count as one entry each)."""


class Identities:
    """Learns lid ↔ phone pairs from engine events and answers "who else is this person"."""

    def __init__(self, store: InboundPort, clock: Clock, cache_size: int = CACHE_SIZE) -> None:
        self.store = store
        self.clock = clock
        self.cache_size = cache_size
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()  # (instance, id) -> other id, "" = none

    async def other(self, instance_id: str, jid: str, alt: str | None) -> str | None:
        """The person's other id: ``alt`` when the engine told it (and then remembered), else the stored pair.

        Only people have two ids: a group or channel id gets ``alt`` back unchanged (None when absent).
        """
        pair = votes.lid_and_phone(jid, alt)
        if pair is not None:
            await self._learn(instance_id, *pair)
            return alt
        if alt or not (jid.endswith("@lid") or jid.endswith("@c.us")):
            return alt
        cached = self._known.get((instance_id, jid))
        if cached is not None:
            self._known.move_to_end((instance_id, jid))
            return cached or None
        found = await self.store.find_identity(instance_id, jid)
        if found is None:
            self._known[(instance_id, jid)] = ""  # not known yet; learning a pair replaces this
            self._trim()
            return None
        self._keep(instance_id, *found)
        lid, phone = found
        return phone if jid == lid else lid

    async def _learn(self, instance_id: str, lid: str, phone: str) -> None:
        if self._known.get((instance_id, lid)) == phone and self._known.get((instance_id, phone)) == lid:
            return
        await self.store.remember_identity(instance_id, lid, phone, now=self.clock.now_ms())
        self._keep(instance_id, lid, phone)
        log.info("identity_learned", instance_id=instance_id)

    def _keep(self, instance_id: str, lid: str, phone: str) -> None:
        before = self._known.get((instance_id, lid))
        if before and before != phone:  # the lid moved to another phone: the old phone no longer names it
            self._known.pop((instance_id, before), None)
        self._known[(instance_id, lid)] = phone
        self._known[(instance_id, phone)] = lid
        self._known.move_to_end((instance_id, lid))
        self._known.move_to_end((instance_id, phone))
        self._trim()

    def _trim(self) -> None:
        while len(self._known) > self.cache_size:
            self._known.popitem(last=False)

    def forget(self, instance_id: str) -> None:
        """Drop the in-memory pairs of an instance (it was deleted)."""
        for key in [k for k in self._known if k[0] == instance_id]:
            del self._known[key]
