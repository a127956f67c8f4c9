"""Webhook bodies and signatures (DESIGN §4).

The body is serialised exactly as JavaScript's ``JSON.stringify`` would re-serialise it after
parsing: compact separators, non-ASCII characters unescaped (UTF-8), key order kept. So a
receiver that verifies over ``JSON.stringify(req.body)`` gets the same bytes as one that
verifies over the raw body.

Headers:
* ``x-wa-hub-signature``: hex HMAC-SHA256 of the body bytes keyed with the webhook secret
  (the existing wa-hub's header).
* Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``
  (epoch seconds) and ``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
  The key is the secret's UTF-8 bytes, so a receiver using the ``standardwebhooks`` library
  passes ``base64(secret)`` as its secret (or ``whsec_`` + that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def serialize(payload: Any) -> str:
    """JSON text equal to ``JSON.stringify(payload)`` for JSON-compatible values."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def hub_signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body`` with ``secret`` (header ``x-wa-hub-signature``)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature`` value (``v1,<base64>``)."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(*, secret: str | None, auth_token: str | None, event_id: str, timestamp_s: int,
            body: bytes) -> dict[str, str]:
    """Every header of one delivery attempt (signatures only when a secret is configured)."""
    out = {"content-type": "application/json", "user-agent": "wa-hub-webhooks/1",
           "webhook-id": event_id, "webhook-timestamp": str(timestamp_s)}
    if secret:
        out["x-wa-hub-signature"] = hub_signature(secret, body)
        out["webhook-signature"] = standard_signature(secret, event_id, timestamp_s, body)
    if auth_token:
        out["authorization"] = f"Bearer {auth_token}"
    return out


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time check of an ``x-wa-hub-signature`` value."""
    return hmac.compare_digest(hub_signature(secret, body), signature)
