"""The API's key check as a route dependency, declared as the two OpenAPI security schemes.

``Authorization: Bearer <API_KEY>`` or ``X-API-Key: <API_KEY>``; the comparison and the public
paths are :mod:`wahub.edge.auth`'s (shared with the dashboard's login).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from wahub.domain.errors import Forbidden, Unauthenticated
from wahub.edge import auth as edge

BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <API_KEY>`")
HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: <API_KEY>`")


def presented_key(request: Request) -> str | None:
    """The key a request carries, from ``Authorization: Bearer`` or ``X-API-Key``."""
    return edge.key_from_headers({k.lower(): v for k, v in request.headers.raw})


async def require_key(request: Request,
                      _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
                      _header: Annotated[str | None, Security(HEADER)] = None) -> None:
    """FastAPI dependency: raise Unauthenticated (no key) or Forbidden (wrong key) unless the request carries it.

    The two ``Security`` parameters only declare the schemes in OpenAPI (the Authorize button); the
    key is read from the headers here, so direct calls (``await require_key(request)``) check it too.
    """
    reason = edge.refusal(request.app.state.hub.settings.api_key, presented_key(request))
    if reason is not None:
        raise (Forbidden if reason == edge.WRONG else Unauthenticated)(reason)
