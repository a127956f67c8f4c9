"""Instance lifecycle: states and the explicit transition table (DESIGN §2)."""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    """Connection state of an instance (API values are these lower-case strings)."""

    INITIALIZING = "initializing"
    CONNECTING = "connecting"
    NEEDS_QR = "needs_qr"
    READY = "ready"
    DISCONNECTED = "disconnected"
    RESTRICTED = "restricted"
    ERROR = "error"
    LOGGED_OUT = "logged_out"
    STOPPED = "stopped"


TERMINAL = frozenset({State.NEEDS_QR, State.LOGGED_OUT, State.RESTRICTED, State.ERROR, State.STOPPED})

S = State
# Allowed moves. Terminal states are left only by an explicit restart (→ initializing), or
# for RESTRICTED by the ban's expiry when configured (also → initializing).
TRANSITIONS: dict[State, frozenset[State]] = {
    S.INITIALIZING: frozenset({S.CONNECTING, S.READY, S.NEEDS_QR, S.DISCONNECTED, S.LOGGED_OUT,
                               S.RESTRICTED, S.ERROR, S.STOPPED}),
    S.CONNECTING: frozenset({S.READY, S.NEEDS_QR, S.DISCONNECTED, S.LOGGED_OUT, S.RESTRICTED,
                             S.ERROR, S.STOPPED, S.INITIALIZING}),
    S.READY: frozenset({S.DISCONNECTED, S.LOGGED_OUT, S.RESTRICTED, S.ERROR, S.STOPPED, S.INITIALIZING}),
    S.DISCONNECTED: frozenset({S.INITIALIZING, S.CONNECTING, S.READY, S.NEEDS_QR, S.LOGGED_OUT,
                               S.RESTRICTED, S.ERROR, S.STOPPED}),
    S.NEEDS_QR: frozenset({S.INITIALIZING, S.STOPPED, S.LOGGED_OUT}),
    S.LOGGED_OUT: frozenset({S.INITIALIZING, S.STOPPED}),
    S.RESTRICTED: frozenset({S.INITIALIZING, S.STOPPED, S.LOGGED_OUT}),
    S.ERROR: frozenset({S.INITIALIZING, S.STOPPED, S.LOGGED_OUT}),
    S.STOPPED: frozenset({S.INITIALIZING}),
}


def can_move(src: State, dst: State) -> bool:
    """True when the table allows ``src → dst`` (a move to the same state is never a transition)."""
    return dst in TRANSITIONS[src]


def external_status(state: State, has_qr: bool) -> str:
    """WaAPI ``clientStatus.instanceStatus`` for a state: ``qr`` while a scannable QR is shown."""
    if state in (State.CONNECTING, State.INITIALIZING) and has_qr:
        return "qr"
    return state.value
