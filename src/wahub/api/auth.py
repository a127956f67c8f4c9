"""API-key authentication: ``Authorization: Bearer <API_KEY>`` (or ``X-API-Key``), constant time."""

from __future__ import annotations

import hmac

from fastapi import Request

from wahub.domain.errors import ApiError


class Unauthorized(ApiError):
    """Missing API key (401)."""

    status_code = 401


class Forbidden(ApiError):
    """Wrong API key (403, as the existing wa-hub answered)."""

    status_code = 403


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


MISSING = 'API key required: send "Authorization: Bearer <API_KEY>" or "X-API-Key"'
WRONG = "Invalid API key"
# Paths that do not take the API key: liveness/readiness, the API docs, the dashboard (its own
# session login), /metrics (which checks the key itself unless METRICS_REQUIRE_AUTH=false) and
# /cloud (Meta's webhook calls: each is signed with the app secret and checked by the route).
PUBLIC_PREFIXES = ("/health", "/ready", "/docs", "/redoc", "/openapi.json", "/dashboard", "/metrics",
                   "/favicon.ico", "/cloud")


def refusal(expected: str | None, given: str | None) -> str | None:
    """Why a request with key ``given`` is refused (None when it may pass)."""
    if expected is None:
        return None
    if given is None:
        return MISSING
    if not key_matches(expected, given):
        return WRONG
    return None


def refusal_status(reason: str) -> int:
    """HTTP status of a refusal: 401 without a key, 403 with a wrong one."""
    return 403 if reason == WRONG else 401


def key_from_headers(headers: dict[bytes, bytes]) -> str | None:
    """:func:`presented_key` on raw ASGI headers (checked before the body is read)."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key is not None else None


def is_public(path: str) -> bool:
    """True for paths that do not take the API key."""
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PUBLIC_PREFIXES)


async def require_key(request: Request) -> None:
    """FastAPI dependency: raise 401 (no key) or 403 (wrong key) unless the request carries the API key."""
    reason = refusal(request.app.state.hub.settings.api_key, presented_key(request))
    if reason is not None:
        raise (Forbidden if reason == WRONG else Unauthorized)(reason)
