"""The API key at the edge: where a request carries it, constant-time comparison, which paths are public.

Shared by the API (its guard and route dependency) and the dashboard (its login form). Framework
free apart from raw ASGI headers, so neither side imports the other.
"""

from __future__ import annotations

import hmac

MISSING = 'API key required: send "Authorization: Bearer <API_KEY>" or "X-API-Key"'
WRONG = "Invalid API key"
# Paths that do not take the API key: liveness/readiness, the API docs, the dashboard (its own
# session login), /metrics (which checks the key itself unless METRICS_REQUIRE_AUTH=false) and /cloud
# (Meta's webhook calls: each is signed with the app secret and checked by the route).
PUBLIC_PREFIXES = ("/health", "/ready", "/docs", "/redoc", "/openapi.json", "/dashboard", "/metrics",
                   "/favicon.ico", "/cloud")
#: Scope key of a request the web app's guard has already checked (key, body limit, request id) in
#: front of FastAPI's middleware stack (``wahub.web.app.WebApp``): the layers inside pass it on.
GUARDED = "wahub.guarded"


def key_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; with no key configured (insecure dev mode) everything passes."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def refusal(expected: str | None, given: str | None) -> str | None:
    """Why a request with key ``given`` is refused: :data:`MISSING`, :data:`WRONG` or None (it may pass)."""
    if expected is None:
        return None
    if given is None:
        return MISSING
    if not key_matches(expected, given):
        return WRONG
    return None


def key_from_headers(headers: dict[bytes, bytes]) -> str | None:
    """The key raw ASGI headers carry, from ``Authorization: Bearer`` or ``X-API-Key``."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key is not None else None


_PUBLIC_EXACT = frozenset(("/", *PUBLIC_PREFIXES))
_PUBLIC_UNDER = tuple(p + "/" for p in PUBLIC_PREFIXES)


def is_public(path: str) -> bool:
    """True for paths that do not take the API key."""
    return path in _PUBLIC_EXACT or path.startswith(_PUBLIC_UNDER)
