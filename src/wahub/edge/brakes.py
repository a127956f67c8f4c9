"""The failed-credentials brake at the edges: API keys (in the Guard) and dashboard logins.

Both log every failure with the client address — never the key that was tried — and answer 429 with
``Retry-After`` while :class:`~wahub.domain.brake.FailureBrake` holds the client. The client address
is the peer of the connection; behind a reverse proxy on the same host uvicorn takes it from
``X-Forwarded-For`` (its ``--forwarded-allow-ips`` default trusts 127.0.0.1), so one client's
guesses never lock out everyone behind the proxy.
"""

from __future__ import annotations

import structlog
from starlette.types import Scope

from wahub.domain.brake import FailureBrake
from wahub.edge import auth

log = structlog.get_logger("wahub.auth")

BRAKED = "too many failed attempts with a wrong API key from this address; retry after the Retry-After seconds"


def client_address(scope: Scope) -> str:
    """The client's address as the server sees it (``unknown`` when the transport has none)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def braked(brake: FailureBrake, scope: Scope, refused: str | None, now_ms: int) -> int:
    """Seconds to refuse this API request for (0: go on); counts and logs it when its key is wrong."""
    client = client_address(scope)
    wait_s = brake.retry_after_s(client, now_ms)
    if wait_s:
        return wait_s
    if refused == auth.WRONG:
        failure(brake, client, now_ms, "api_key_rejected", path=scope.get("path", ""))
    return 0


def failure(brake: FailureBrake, client: str, now_ms: int, event: str, **fields: object) -> None:
    """Count a failed credential of ``client`` and log it (with the client, never the credential)."""
    closed = brake.failed(client, now_ms)
    log.warning(event, client=client, **fields)
    if closed:
        log.warning("auth_brake_closed", client=client, retry_after_s=brake.retry_after_s(client, now_ms))
