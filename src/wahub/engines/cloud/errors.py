"""Graph API errors and their place in wa-hub's exception tree (pure: no I/O).

    EngineError
    ├── GraphError                 the Graph API answered with an error object (code, subcode, message)
    └── GraphUnreachable           no answer: dns | tls | refused | timeout | network (maybe_sent after a write)
    SendError family (wahub.domain.errors), built by :func:`send_error`:
    ├── TransientSendError         throughput / pair rate limits, server hiccups (retry with backoff)
    ├── PermanentSendError         outside the 24-hour window, undeliverable, invalid parameter
    │   └── OutsideServiceWindow   raised before calling Graph when no template is chosen (→ HTTP 422)
    └── DisconnectedError          the account is unusable (token expired, locked): re-queued, no attempt
    ApiError (wahub.domain.errors)
    └── WebhookRejected            403 for a webhook with a forged signature or a wrong verify token

Codes come from Meta's "Cloud API error codes" page
(https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes) and the Graph API
error-handling page (https://developers.facebook.com/docs/graph-api/guides/error-handling):

=========  ==========================================================  =========================
code       Graph meaning                                               wa-hub
=========  ==========================================================  =========================
1, 2       API unknown / API service temporarily unavailable           transient
4, 80007   application / WABA rate limit hit                           transient (rate_limited)
130429     Cloud API throughput reached (messages per second)          transient (rate_limited)
131056     pair rate limit: too many messages to the same user         transient (pair_rate_limited)
131048     spam rate limit hit                                         transient (rate_limited)
131000     something went wrong                                        transient
131016     service unavailable                                         transient
131047     re-engagement message: more than 24 h since the user wrote  permanent outside_service_window
131026     message undeliverable (not on WhatsApp, old app, blocked)   permanent undeliverable
131049     Meta chose not to deliver (ecosystem engagement)            permanent not_delivered
131050     user stopped marketing messages                             permanent opted_out
131021     recipient cannot be the sender                              permanent invalid_recipient
100        invalid parameter (also 131008, 131009, 131051)             permanent invalid_parameter
132000+    template missing, paused, parameters mismatch               permanent template_error
190        access token expired or invalid                             terminal (token_expired)
0, 3, 10,  auth exception, capability or permission missing            terminal (auth_failed)
200-299
368        temporarily blocked for policy violations                   restricted
131031     business account locked                                     restricted
=========  ==========================================================  =========================

``100`` on the credentials check (``GET /{phone-number-id}``) means the id does not exist or the
token cannot see it: there it is terminal (``auth_failed``), on a send it is a bad parameter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wahub.domain.errors import (
    DisconnectedError,
    EngineError,
    Forbidden,
    PermanentSendError,
    SendError,
    TransientSendError,
)

OUTSIDE_SERVICE_WINDOW = "outside_service_window"


class Kind(enum.Enum):
    """What a Graph error means for wa-hub."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    AUTH = "auth"  # the credentials no longer work: terminal (logged_out) until an operator acts
    RESTRICTED = "restricted"  # Meta restricted the account (restricted state)


@dataclass(frozen=True)
class Verdict:
    """A Graph error classified: its ``kind`` and a short machine-readable ``reason``."""

    kind: Kind
    reason: str


_TRANSIENT = {1: "graph_unavailable", 2: "graph_unavailable", 4: "rate_limited", 80007: "rate_limited",
              130429: "rate_limited", 131056: "pair_rate_limited", 131048: "rate_limited",
              131000: "graph_unavailable", 131016: "graph_unavailable"}
_PERMANENT = {131047: OUTSIDE_SERVICE_WINDOW, 131026: "undeliverable", 131049: "not_delivered",
              131050: "opted_out", 131021: "invalid_recipient", 100: "invalid_parameter",
              131008: "invalid_parameter", 131009: "invalid_parameter", 131051: "unsupported_message"}
_AUTH = {0: "auth_failed", 3: "auth_failed", 10: "auth_failed", 190: "token_expired"}
_RESTRICTED = {368: "policy_block", 131031: "account_locked"}


class GraphError(EngineError):
    """The Graph API answered with an error object. ``http_status`` is the HTTP status (0 if unknown)."""

    def __init__(self, code: int, message: str, *, subcode: int | None = None, http_status: int = 0,
                 title: str | None = None, trace_id: str | None = None) -> None:
        super().__init__(f"Graph error {code}: {message}")
        self.code = code
        self.subcode = subcode
        self.graph_message = message
        self.http_status = http_status
        self.title = title
        self.trace_id = trace_id


class GraphUnreachable(EngineError):
    """No answer from the Graph API. ``reason``: dns | tls | refused | timeout | network.

    ``maybe_sent`` is True when the request had been written before the failure (a read timeout
    or a dropped connection): Meta may have accepted the message.
    """

    def __init__(self, message: str, *, reason: str, maybe_sent: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.maybe_sent = maybe_sent


class OutsideServiceWindow(PermanentSendError):
    """A free-form message or interactive poll to a chat whose 24-hour service window is closed.

    Only an approved template may start a conversation. ``status_code`` lets the API answer 422.
    """

    status_code = 422

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "the chat's 24-hour service window is closed: send the poll as an approved "
                                    "template (choose one for the instance or this send)",
                         reason=OUTSIDE_SERVICE_WINDOW)


class WebhookRejected(Forbidden):
    """A webhook call the hub refuses: forged or missing signature, wrong verify token (403)."""


def classify(code: int, *, http_status: int = 0, on_check: bool = False) -> Verdict:
    """The wa-hub meaning of Graph error ``code``; ``on_check`` for the credentials check call."""
    if code in _AUTH or 200 <= code <= 299:
        return Verdict(Kind.AUTH, _AUTH.get(code, "auth_failed"))
    if on_check and code == 100:
        return Verdict(Kind.AUTH, "auth_failed")
    if code in _RESTRICTED:
        return Verdict(Kind.RESTRICTED, _RESTRICTED[code])
    if code in _TRANSIENT:
        return Verdict(Kind.TRANSIENT, _TRANSIENT[code])
    if code in _PERMANENT:
        return Verdict(Kind.PERMANENT, _PERMANENT[code])
    if 132000 <= code <= 132999:
        return Verdict(Kind.PERMANENT, "template_error")
    if http_status == 429 or http_status >= 500:
        return Verdict(Kind.TRANSIENT, "graph_unavailable")
    if http_status == 401:
        return Verdict(Kind.AUTH, "auth_failed")
    return Verdict(Kind.PERMANENT, f"graph_{code}")


def unreachable_send_error(exc: GraphUnreachable) -> SendError:
    """A send that got no answer: transient, ``maybe_sent`` when the request was already written."""
    return TransientSendError(str(exc), reason=f"graph_{exc.reason}", maybe_sent=exc.maybe_sent)


def send_error(exc: GraphError) -> SendError:
    """The ``SendError`` the outbox acts on for a failed send.

    Auth and restriction errors become ``DisconnectedError``: the item goes back to the queue
    without an attempt, because the message is fine and the account is not (the engine reports
    the terminal state separately).
    """
    verdict = classify(exc.code, http_status=exc.http_status)
    detail = f"{exc.graph_message} (Graph {exc.code})"
    if verdict.kind is Kind.TRANSIENT:
        return TransientSendError(detail, reason=verdict.reason)
    if verdict.reason == OUTSIDE_SERVICE_WINDOW:
        return OutsideServiceWindow(f"{detail}: only an approved template may reach this chat now")
    if verdict.kind is Kind.PERMANENT:
        return PermanentSendError(detail, reason=verdict.reason)
    return DisconnectedError(detail, reason=verdict.reason)


def terminal_reason(exc: GraphError) -> str:
    """A ``LoggedOut`` / state reason naming the Graph code and message, e.g. ``token_expired (Graph 190/463): …``."""
    verdict = classify(exc.code, http_status=exc.http_status, on_check=True)
    code = f"{exc.code}/{exc.subcode}" if exc.subcode else str(exc.code)
    return f"{verdict.reason} (Graph {code}): {exc.graph_message}"
