"""Number resolutions in memory (numbers port)."""

from __future__ import annotations

from wahub.store.memory.state import MemoryBase


class NumbersMemory(MemoryBase):
    """Number resolutions in memory (numbers port)."""

    async def remember_number(self, instance_id: str, typed: str, resolved: str | None, *, now: int) -> None:
        """Store the answer for ``typed`` (the newest answer wins)."""
        self._numbers[(instance_id, typed)] = (resolved, now)

    async def find_number(self, instance_id: str, typed: str) -> tuple[str | None, int] | None:
        """``(resolved, checked_at)`` for ``typed``, or None when never asked."""
        return self._numbers.get((instance_id, typed))
