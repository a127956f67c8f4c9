"""The one exception tree of wa-hub.

    WaHubError
    ├── SendError                      an engine could not send one outbox item
    │   ├── TransientSendError         retry later with backoff (timeouts, server hiccups)
    │   ├── PermanentSendError         never retry (not on WhatsApp, invalid recipient, too long)
    │   └── DisconnectedError          the connection went away mid-send; the item is re-queued
    │                                  without counting an attempt
    ├── EngineError                    an engine call other than a send failed
    ├── StoreError                     the database failed
    │   └── StoreUnavailable           the database cannot be reached (API answers 503)
    └── ApiError                       a request refused for a reason the caller can act on
        ├── InvalidInput               the input is malformed or invalid (the message names the field)
        ├── Unauthenticated            no credentials were presented
        ├── Forbidden                  the credentials (key, signature, token) are wrong
        ├── NotFound                   the addressed thing does not exist
        ├── Conflict                   the request contradicts stored state
        ├── Unprocessable              well-formed, but cannot be sent (e.g. outside the service window)
        ├── QueueFull                  the instance's outbox is full (with ``retry_after_s``)
        ├── NotSupported               the instance's engine cannot do this action (the message says why)
        └── ServiceUnavailable         the store or the engines are not available
            └── ShuttingDown           wa-hub is stopping (with ``retry_after_s``)

The errors carry meaning only; ``wahub.api.errors.STATUS`` maps them to HTTP status codes.
"""

from __future__ import annotations

from typing import Any


class WaHubError(Exception):
    """Root of every error wa-hub raises on purpose."""


class SendError(WaHubError):
    """An engine could not send one outbox item; ``reason`` is a short machine-readable code.

    ``maybe_sent`` is True when the message may have reached WhatsApp before the failure (the
    engine process died mid-send, or the server's answer timed out): the outbox then marks the
    item ``uncertain`` instead of retrying, because engines cannot choose message ids and a retry
    could deliver it twice.
    """

    def __init__(self, message: str, *, reason: str = "send_error", maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.maybe_sent = maybe_sent


class TransientSendError(SendError):
    """The send may succeed later: back off and retry (counts one attempt)."""


class PermanentSendError(SendError):
    """The send can never succeed (e.g. ``not_on_whatsapp``, ``invalid_recipient``, ``too_long``)."""


class DisconnectedError(SendError):
    """The connection dropped during the send; the item returns to the queue, no attempt counted."""


class EngineError(WaHubError):
    """An engine call other than a send failed (pairing code, number check, logout)."""


class StoreError(WaHubError):
    """The storage layer failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now."""


class ApiError(WaHubError):
    """A request refused for a reason the caller can act on; ``extra`` are context fields for the answer."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidInput(ApiError):
    """Malformed or invalid input; the message names the field."""


class Unauthenticated(ApiError):
    """No credentials were presented (no API key)."""


class Forbidden(ApiError):
    """The credentials presented are wrong (API key, webhook signature, verify token)."""


class NotFound(ApiError):
    """The addressed instance, item or event does not exist."""


class Conflict(ApiError):
    """The request conflicts with stored state, e.g. an idempotency key reused with another payload."""


class Unprocessable(ApiError):
    """A well-formed request that cannot be carried out as asked (422), e.g. a free-form message to a
    Cloud API chat whose 24-hour service window is closed; ``reason`` names why."""


class QueueFull(ApiError):
    """The instance's outbox holds ``MAX_QUEUE_SIZE`` open items."""


    def __init__(self, message: str, *, retry_after_s: int, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after_s = retry_after_s


class NotSupported(ApiError):
    """The instance's engine cannot do this action (501); the message says why."""


class ServiceUnavailable(ApiError):
    """The store or the engines are not available."""


class ShuttingDown(ServiceUnavailable):
    """wa-hub is stopping and takes no new sends (``retry_after_s``)."""

    def __init__(self, message: str, *, retry_after_s: int, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after_s = retry_after_s
