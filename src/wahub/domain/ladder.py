"""The reconnection ladder, the restart budget and auto-resume after a ban (DESIGN §2), as pure rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from wahub.domain import lifecycle
from wahub.domain.lifecycle import State

STABLE_READY_MS = 60_000  # uninterrupted `ready` this long resets the ladder
MAX_BACKOFF_MS = 300_000


def next_rung(failures: int, base_ms: int, cooldown_ms: int = 0) -> tuple[int, Literal["soft", "hard"]]:
    """Wait (ms) and restart kind after the ``failures``-th consecutive failed attempt (1-based).

    ``base_ms * 2**(failures-1)`` capped at :data:`MAX_BACKOFF_MS`, but never less than
    ``cooldown_ms`` (``MIN_DISCONNECT_COOLDOWN_MS``); a soft restart first, hard after.
    """
    delay = max(cooldown_ms, min(MAX_BACKOFF_MS, base_ms * 2 ** (max(1, failures) - 1)))
    return delay, "soft" if failures <= 1 else "hard"


def over_budget(restarts_in_window: Sequence[int], max_restarts: int) -> bool:
    """True when one more restart would exceed ``MAX_RESTARTS_PER_WINDOW``."""
    return len(restarts_in_window) >= max_restarts


def budget_frees_at(restarts_in_window: Sequence[int], window_ms: int) -> int | None:
    """When the oldest restart leaves the window (epoch ms), or None when none is counted."""
    return min(restarts_in_window) + window_ms if restarts_in_window else None


def may_restore(state: State, restricted_until: int | None, now_ms: int, auto_resume: bool) -> bool:
    """Whether an instance is started at boot: any non-terminal state, or a ban that expired with
    ``RESTRICTED_AUTO_RESUME`` on."""
    if state not in lifecycle.TERMINAL:
        return True
    at = resume_at(state, restricted_until, auto_resume)
    return at is not None and at <= now_ms


def resume_at(state: State, restricted_until: int | None, auto_resume: bool) -> int | None:
    """When a restricted instance resumes by itself (epoch ms), or None when only a human can resume it."""
    if state != State.RESTRICTED or not auto_resume or restricted_until is None:
        return None
    return restricted_until
