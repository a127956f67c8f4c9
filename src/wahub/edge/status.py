"""The one place where a domain refusal becomes an HTTP status code (the API's answers, the dashboard's pages)."""

from __future__ import annotations

from wahub.domain.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotSupported,
    QueueFull,
    ServiceUnavailable,
    Unauthenticated,
    Unprocessable,
)

#: Domain refusal → HTTP status; a subclass takes its nearest listed ancestor's code.
STATUS: dict[type[ApiError], int] = {
    InvalidInput: 400, Unauthenticated: 401, Forbidden: 403, NotFound: 404, Conflict: 409, Unprocessable: 422,
    QueueFull: 429, NotSupported: 501,
    ServiceUnavailable: 503, ApiError: 400,
}


def status_of(exc: ApiError) -> int:
    """The HTTP status code of a refusal (by :data:`STATUS`, nearest ancestor first)."""
    return next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)
