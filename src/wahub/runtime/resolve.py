"""Who is this number: WhatsApp's answer (IsOnWhatsApp) before the first send to a typed number.

A number may be known to WhatsApp under another id than the one typed — a Brazilian mobile with or
without the ninth digit, a Mexican mobile with or without the ``1`` after ``52`` — or not at all.
Before a send to a person's ``…@c.us`` id the send loop asks :meth:`Resolver.resolve`, which answers
the id WhatsApp returned, from the store when the answer is younger than ``RESOLVE_CACHE_SECONDS``
(0: ask every time; "not on WhatsApp" at most an hour), else from the engine's ``get-number-id``.
Both forms are stored (typed → resolved). A number that is not on WhatsApp raises
``PermanentSendError(reason="not_on_whatsapp")``: the item fails after one attempt. A failed or slow
answer (``timeout_ms``) raises ``TransientSendError(reason="resolve_failed")``: the item is retried
later like any transient send error. Engines without ``get-number-id`` (the Cloud API) send to the
typed id, as before.

The loop calls this before its final pacing decision, never between the send's instant and the
engine call (see :mod:`wahub.runtime.sendloop`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import structlog

from wahub.domain import chatid
from wahub.domain.clock import Clock
from wahub.domain.errors import EngineError, PermanentSendError, TransientSendError
from wahub.engines import base as eng
from wahub.store.base import NumbersPort

log = structlog.get_logger("wahub.resolve")

NEGATIVE_TTL_MS = 3_600_000
"""A "not on WhatsApp" answer is asked again after at most an hour: the customer may install it today."""

CACHE_SIZE = 10_000
"""Answers kept in memory besides the store (per process, newest used last)."""


class NeedsLookup(Exception):
    """No stored answer for this number: WhatsApp must be asked before a send to it."""


class Resolver:
    """Resolves typed person ids to the id WhatsApp knows, caching the answers (store + memory)."""

    def __init__(self, store: NumbersPort, clock: Clock, *, ttl_ms: int, timeout_ms: int,
                 cache_size: int = CACHE_SIZE) -> None:
        self.store = store
        self.clock = clock
        self.ttl_ms = ttl_ms
        self.timeout_ms = timeout_ms
        self.cache_size = cache_size
        self._known: OrderedDict[tuple[str, str], tuple[str | None, int]] = OrderedDict()

    async def resolve(self, instance_id: str, engine: eng.Engine, chat_id: str, *, ask: bool = True) -> str:
        """The id to send ``chat_id`` to; unchanged for groups, lids and engines that cannot tell.

        With ``ask=False`` only a stored answer is used: :class:`NeedsLookup` is raised when
        WhatsApp would have to be asked (the send loop then asks with nothing handed over).
        Raises PermanentSendError (``not_on_whatsapp``) or TransientSendError (``resolve_failed``).
        """
        digits = chatid.phone_number(chat_id)
        book = engine.directory()
        if digits is None or "get-number-id" not in book.actions:
            return chat_id
        now = self.clock.now_ms()
        known = await self._cached(instance_id, chat_id, now)
        if known is None and not ask:
            raise NeedsLookup(chat_id)
        if known is None:
            try:
                async with asyncio.timeout(self.timeout_ms / 1000):
                    answer = await book.call("get-number-id", {"number": digits})
            except (EngineError, TimeoutError) as exc:
                raise TransientSendError(f"could not ask WhatsApp who {chat_id} is: {exc or 'timeout'}",
                                         reason="resolve_failed") from exc
            resolved = answer.get("jid") if isinstance(answer, dict) else None
            resolved = str(resolved) if resolved else None
            await self.store.remember_number(instance_id, chat_id, resolved, now=now)
            self._keep(instance_id, chat_id, resolved, now)
            if resolved != chat_id:
                log.info("number_resolved", instance_id=instance_id, changed=resolved is not None,
                         on_whatsapp=resolved is not None)
            known = (resolved, now)
        resolved = known[0]
        if resolved is None:
            raise PermanentSendError(f"{chat_id} is not on WhatsApp", reason="not_on_whatsapp")
        return resolved

    async def _cached(self, instance_id: str, chat_id: str, now: int) -> tuple[str | None, int] | None:
        key = (instance_id, chat_id)
        found = self._known.get(key)
        if found is None:
            found = await self.store.find_number(instance_id, chat_id)
            if found is not None:
                self._keep(instance_id, chat_id, *found)
        else:
            self._known.move_to_end(key)
        ttl = self.ttl_ms if found is None or found[0] is not None else min(self.ttl_ms, NEGATIVE_TTL_MS)
        if found is None or now - found[1] >= ttl:
            return None
        return found

    def _keep(self, instance_id: str, chat_id: str, resolved: str | None, at: int) -> None:
        self._known[(instance_id, chat_id)] = (resolved, at)
        self._known.move_to_end((instance_id, chat_id))
        while len(self._known) > self.cache_size:
            self._known.popitem(last=False)

    def forget(self, instance_id: str) -> None:
        """Drop the in-memory answers of a deleted instance."""
        for key in [k for k in self._known if k[0] == instance_id]:
            del self._known[key]
