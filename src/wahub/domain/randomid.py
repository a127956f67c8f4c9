"""Random hex for ids (queue ids, request ids): ``os.urandom`` bytes, drawn 4 KiB at a time.

Why: ``os.urandom`` is a system call, and a system call on the event loop's thread lets go of the GIL;
under load the database thread takes it and the loop then waits to get it back, so one ``os.urandom``
per request cost ~10 µs of the enqueue path instead of 0.3 µs (docs/PERFORMANCE.md, "Random ids from a
pool"). Drawn 4 KiB at a time, a 10-byte id costs one system call per ~400 ids. Every byte is handed out
once, from any thread; a forked child draws afresh (it never repeats its parent's bytes). Not for
secrets: use :mod:`secrets` for those.
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096


class RandomPool:
    """Bytes of ``os.urandom``, drawn ``POOL_BYTES`` at a time and handed out once each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0

    def hex(self, nbytes: int) -> str:
        """``nbytes`` random bytes as ``2 * nbytes`` lower-case hex digits (more than ``POOL_BYTES`` in one
        draw of their own)."""
        with self._lock:
            if self._at + nbytes > len(self._bytes):
                self._bytes, self._at = os.urandom(max(POOL_BYTES, nbytes)), 0
            start = self._at
            self._at = start + nbytes
            return self._bytes[start:start + nbytes].hex()

    def forget(self) -> None:
        """Drop the bytes not handed out yet (a forked child must not hand out its parent's)."""
        self._lock = threading.Lock()
        self._bytes, self._at = b"", 0


POOL = RandomPool()
os.register_at_fork(after_in_child=POOL.forget)


def random_hex(nbytes: int) -> str:
    """``nbytes`` random bytes (from :data:`POOL`) as hex."""
    return POOL.hex(nbytes)
