"""The clock seam: every window, backoff and timer reads time through a :class:`Clock`."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Injected time source. ``now_ms`` is epoch milliseconds; ``sleep`` waits ``ms`` milliseconds."""

    def now_ms(self) -> int:
        """Current time, epoch milliseconds."""
        ...

    async def sleep(self, ms: float) -> None:
        """Wait ``ms`` milliseconds (a fake clock returns when time is advanced past it)."""
        ...

    def raise_floor(self, at_ms: int) -> None:
        """Never report a time before ``at_ms`` again (forward only; see ``runtime.clock``)."""
        ...
