"""Webhook bodies and signatures (DESIGN §4).

The body is serialised exactly as JavaScript's ``JSON.stringify`` would re-serialise it after
parsing: compact separators, non-ASCII characters unescaped (UTF-8), key order kept, control
characters escaped the way JavaScript does, lone surrogates escaped (ES2019 well-formed
``JSON.stringify``), floats in JavaScript's number form, and array-index-like keys ("7") first
in ascending order, as JavaScript objects hold them.
So a receiver that verifies over ``JSON.stringify(req.body)`` gets the same bytes as one that
verifies over the raw body. (Integers beyond 2**53 would lose precision in JavaScript; wa-hub's
payloads carry none: timestamps are epoch ms.)

Headers:
* ``x-wa-hub-signature``: hex HMAC-SHA256 of the body bytes keyed with the webhook secret
  (the existing wa-hub's header).
* Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``
  (epoch seconds) and ``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
  A secret of the Standard Webhooks form ``whsec_<base64>`` is used as the spec says: the key is
  the decoded bytes, and the library takes the secret as it is. Any other secret is used as its
  UTF-8 bytes, so a receiver using the ``standardwebhooks`` library passes ``base64(secret)`` (or
  ``whsec_`` + that). ``x-wa-hub-signature`` always keys with the secret string's UTF-8 bytes,
  as the existing wa-hub did.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_WHSEC = "whsec_"


def serialize(payload: Any) -> str:
    """JSON text equal to ``JSON.stringify(payload)`` for JSON-compatible values.

    Raises ValueError for NaN or infinities and TypeError for values JSON cannot hold.
    """
    text = _dump(payload)
    if _LONE_SURROGATE.search(text):
        # Pairs written as two code points become the character; what is left is escaped.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
        text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _dump(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
        # JavaScript objects list array-index keys first, ascending, then the rest in insertion order.
        index = sorted((it for it in items if _is_index(it[0])), key=lambda it: int(it[0]))
        items = index + [it for it in items if not _is_index(it[0])]
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _dump(v) for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _is_index(key: str) -> bool:
    return key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def js_number(value: float) -> str:
    """``JSON.stringify(value)`` for a finite float: JavaScript's shortest round-trip form.

    Raises ValueError for NaN or infinities.
    """
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or infinity")
    if value == 0:
        return "0"
    mantissa, _, exp = repr(value).partition("e")
    if not exp:
        return mantissa.removesuffix(".0")
    exponent = int(exp)
    if exponent >= 21 or exponent <= -7:  # JavaScript keeps the exponent form only out here
        return f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"
    digits = mantissa.lstrip("-").replace(".", "")
    sign = "-" if value < 0 else ""
    if exponent >= 0:  # 1e16 ≤ |value| < 1e21: shortest digits, then zeros
        return sign + digits + "0" * (exponent + 1 - len(digits))
    return sign + "0." + "0" * (-exponent - 1) + digits  # 1e-7 < |value| < 1e-4


def _key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key: ``whsec_<base64>`` decoded, else the secret's UTF-8 bytes."""
    if secret.startswith(_WHSEC):
        try:
            key = base64.b64decode(secret[len(_WHSEC):] + "==", validate=False)
        except (binascii.Error, ValueError):
            key = b""
        if key:
            return key
    return secret.encode("utf-8")


def hub_signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body`` with ``secret`` (header ``x-wa-hub-signature``)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature`` value (``v1,<base64>``)."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
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
