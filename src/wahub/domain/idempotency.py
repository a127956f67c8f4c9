"""Idempotency keys: validation, payload fingerprints and derived keys (DESIGN §3.1)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from wahub.domain.errors import InvalidInput

MAX_KEY_LENGTH = 200


def fingerprint(kind: str, chat_id: str, content: dict[str, Any]) -> str:
    """Hex SHA-256 of (kind, canonical chat id, content): equal payloads give equal fingerprints.

    ``content`` must be JSON-serialisable; keys are sorted so field order never matters.
    """
    canonical = json.dumps({"kind": kind, "chatId": chat_id, "content": content},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def derive_key(instance_id: str, payload_fingerprint: str, now_ms: int, window_s: int) -> str:
    """Key for a send whose client gave none: valid for one window of ``window_s`` seconds.

    Two identical submissions in the same window collapse into one item; the same text can be
    sent again on purpose in a later window. Windows are aligned to multiples of ``window_s``
    since the epoch, so the key is a pure function of its inputs.
    """
    bucket = now_ms // (window_s * 1000) if window_s > 0 else now_ms
    digest = hashlib.sha256(f"{instance_id}|{payload_fingerprint}|{bucket}".encode()).hexdigest()
    return f"auto:{digest[:32]}"


def validate_key(raw: object, *, field: str) -> str:
    """Return a client-chosen key, or raise :class:`InvalidInput` naming ``field``.

    Keys are 1..200 printable characters; surrounding white space is trimmed.
    """
    if not isinstance(raw, str):
        raise InvalidInput(f"{field} must be a string")
    key = raw.strip()
    if not key:
        raise InvalidInput(f"{field} must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"{field} must be at most {MAX_KEY_LENGTH} characters")
    if not key.isprintable():
        raise InvalidInput(f"{field} must contain printable characters only")
    if key.startswith("auto:"):
        raise InvalidInput(f"{field} must not start with 'auto:' (reserved for derived keys)")
    return key
