"""Instance lifecycle: states and the explicit transition table (DESIGN §2).

State table (conditions in brackets are shown next to the state, they are not states):

| state        | entered when                                              | left by                         |
|--------------|-----------------------------------------------------------|---------------------------------|
| initializing | creation, a restart, or a process start (engine not yet   | ready, QR (connecting), failure |
|              | reporting: never ``ready`` after a restart of wa-hub)     |                                 |
| connecting   | a QR is shown, or the session was accepted                | ready, QR window end, failure   |
| ready        | the engine reported ready in this process                 | disconnect, logout, ban, restart|
| disconnected | a drop; a connect failure (``lastError`` names DNS, TLS,  | the ladder's next restart (none |
|              | refused, timeout); an attempt that timed out              | with DISABLE_AUTO_RECONNECT)    |
| needs_qr     | the QR window ended; or a stale session (an attempt that  | an explicit restart             |
|              | heard nothing) was discarded and the next one was silent  |                                 |
| logged_out   | logged out on the phone, stream replaced, or by request   | an explicit restart             |
| restricted   | a temporary ban                                           | restart, or its expiry (option) |
| error        | the restart budget is exhausted                           | an explicit restart             |
| stopped      | stopped by the operator                                   | an explicit restart             |

Conditions: [degraded] sends without any server ack/receipt for ``DEGRADED_AFTER_SENDS`` sends or
``DEGRADED_AFTER_MINUTES`` (see :func:`degraded_reason`), cleared by the next receipt; [storeFault]
the store cannot write (hub-wide). Neither changes the state.
"""

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


def degraded_reason(unacked: int, first_unacked_at: int | None, now_ms: int, after_sends: int,
                    after_ms: int) -> str | None:
    """Why an instance is degraded (zombie session), or None.

    ``unacked`` sends since the last server ack/receipt, the first of them at ``first_unacked_at``
    (epoch ms). Degraded at ``after_sends`` such sends, or once the first is ``after_ms`` old;
    0 turns a rule off.
    """
    if unacked <= 0 or first_unacked_at is None:
        return None
    if after_sends and unacked >= after_sends:
        return f"{unacked} sends without any server ack or receipt"
    if after_ms and now_ms - first_unacked_at >= after_ms:
        return f"no server ack or receipt for {(now_ms - first_unacked_at) // 60_000} minutes after a send"
    return None
