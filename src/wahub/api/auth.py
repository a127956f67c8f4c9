"""API-key authentication: ``Authorization: Bearer <API_KEY>`` (or ``X-API-Key``), constant time."""

from __future__ import annotations

import hmac

from fastapi import Request

from wahub.domain.errors import ApiError


class Unauthorized(ApiError):
    """Missing or wrong API key (401)."""

    status_code = 401


def presented_key(request: Request) -> str | None:
    """The key a request carries, from ``Authorization: Bearer`` or ``X-API-Key``."""
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def key_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; with no key configured (insecure dev mode) everything passes."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


async def require_key(request: Request) -> None:
    """FastAPI dependency: raise 401 unless the request carries the API key."""
    expected = request.app.state.hub.settings.api_key
    given = presented_key(request)
    if expected is None:
        return
    if given is None:
        raise Unauthorized('API key required: send "Authorization: Bearer <API_KEY>" or "X-API-Key"')
    if not key_matches(expected, given):
        raise Unauthorized("invalid API key")
