"""Dashboard sessions: a signed cookie naming a session the server keeps, and a per-session CSRF token.

Logging in with the API key sets ``wahub_session`` = ``<payload>.<signature>``, where the payload
is base64url JSON ``{"v": 1, "iat": <epoch s>, "n": <random nonce>}`` and the signature is
HMAC-SHA256 over the payload with a key derived from the API key. A cookie is valid only while its
nonce is in this process's registry of live sessions (:data:`LIVE`): logging out removes it, so the
cookie stops working at once, not when it expires. Changing ``API_KEY`` signs every session out, a
cookie forged without the key never verifies, and a restart signs everyone out (sessions live in
memory; with several hubs behind one address, route the dashboard to one of them — see docs/deploy.md).

The CSRF token is HMAC(key, ``"csrf:" + nonce``): it is bound to one session, rendered into every
form and checked on every POST (together with ``SameSite=Strict`` on the cookie). With no API key
configured (insecure development mode) the key is random per process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

COOKIE_NAME = "wahub_session"
SESSION_MAX_AGE_S = 12 * 3600
_CONTEXT = b"wa-hub dashboard session v1"
_DEV_KEY = secrets.token_bytes(32)


class Registry:
    """The live sessions of this process: nonce → expiry (epoch s); at most :data:`MAX_SESSIONS`."""

    MAX_SESSIONS = 10_000

    def __init__(self) -> None:
        self._live: dict[str, int] = {}

    def add(self, nonce: str, expires_s: int, now_s: int) -> None:
        """Register a new session (expired ones are dropped; past the cap, the oldest goes)."""
        if len(self._live) >= self.MAX_SESSIONS:
            self._live = {n: e for n, e in self._live.items() if e > now_s}
            while len(self._live) >= self.MAX_SESSIONS:
                del self._live[next(iter(self._live))]
        self._live[nonce] = expires_s

    def alive(self, nonce: str, now_s: int) -> bool:
        """True while the session was issued here, not revoked and not expired."""
        expires = self._live.get(nonce)
        return expires is not None and now_s < expires

    def revoke(self, nonce: str) -> None:
        """End the session now."""
        self._live.pop(nonce, None)


#: The sessions this process issued and has not ended.
LIVE = Registry()


@dataclass(frozen=True)
class Session:
    """A verified dashboard session: when it was issued (epoch s) and its CSRF token."""

    issued_at: int
    csrf_token: str


def signing_key(api_key: str | None) -> bytes:
    """The HMAC key of sessions, derived from the API key (random per process when there is none)."""
    if api_key is None:
        return _DEV_KEY
    return hmac.new(api_key.encode(), _CONTEXT, hashlib.sha256).digest()


def issue(key: bytes, now_s: int) -> str:
    """A fresh session cookie value issued at ``now_s`` (epoch seconds), registered as live."""
    nonce = secrets.token_urlsafe(18)
    LIVE.add(nonce, now_s + SESSION_MAX_AGE_S, now_s)
    payload = json.dumps({"v": 1, "iat": now_s, "n": nonce}, separators=(",", ":"))
    body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{body}.{_sign(key, body)}"


def verify(key: bytes, cookie: str | None, now_s: int) -> Session | None:
    """The session in ``cookie`` when its signature is valid, it is live and younger than 12 h, else None."""
    found = _decode(key, cookie)
    if found is None:
        return None
    issued, nonce = found
    if not issued - 60 <= now_s < issued + SESSION_MAX_AGE_S or not LIVE.alive(nonce, now_s):
        return None
    csrf = hmac.new(key, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()
    return Session(issued_at=issued, csrf_token=csrf)


def revoke(key: bytes, cookie: str | None) -> None:
    """End the session ``cookie`` names (logout); a cookie that does not verify is ignored."""
    found = _decode(key, cookie)
    if found is not None:
        LIVE.revoke(found[1])


def _decode(key: bytes, cookie: str | None) -> tuple[int, str] | None:
    """(issued at, nonce) of a cookie whose signature is valid, else None."""
    if not cookie or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    if not hmac.compare_digest(_sign(key, body).encode(), signature.encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(data, dict) or data.get("v") != 1:
        return None
    issued, nonce = data.get("iat"), data.get("n")
    if not isinstance(issued, int) or not isinstance(nonce, str):
        return None
    return issued, nonce


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Constant-time check of a form's or header's CSRF token against the session's."""
    return presented is not None and hmac.compare_digest(session.csrf_token.encode(), presented.encode())


def _sign(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
