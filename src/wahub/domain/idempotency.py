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


def derived_key(instance_id: str, payload_fingerprint: str, previous: tuple[str, int] | None, now_ms: int,
                window_s: int) -> str:
    """Key for a send whose client gave none, on a sliding window of ``window_s`` seconds.

    ``previous`` is ``(key, created_at_ms)`` of the newest item derived from the same instance and
    fingerprint, or None. A submission less than ``window_s`` after that item was created gets the
    same key (so it collapses into that item wherever a clock edge falls); a later one gets the
    next generation's key, so the same text can be sent again on purpose. Concurrent first
    submissions compute the same generation and the database's unique key makes them one item.
    Keys look like ``auto:<32 hex>:<generation>``.
    """
    base = "auto:" + hashlib.sha256(f"{instance_id}|{payload_fingerprint}".encode()).hexdigest()[:32]
    if previous is None:
        return f"{base}:0"
    key, created_at = previous
    generation = _generation(key)
    if window_s > 0 and now_ms - created_at < window_s * 1000:
        return key
    return f"{base}:{generation + 1}"


def _generation(key: str) -> int:
    tail = key.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


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
