"""Content validation of a send (text or poll), with WhatsApp's length and option limits."""

from __future__ import annotations

from typing import Any

from wahub.domain.errors import InvalidInput
from wahub.domain.outbox import (
    MAX_CAPTION_LENGTH,
    MAX_POLL_OPTION_LENGTH,
    MAX_POLL_OPTIONS,
    MAX_TEXT_LENGTH,
    MIN_POLL_OPTIONS,
    ItemKind,
)


def validate(kind: ItemKind, body: dict[str, Any]) -> dict[str, Any]:
    """The content fields of a send, validated; InvalidInput names the bad field."""
    if kind == ItemKind.TEXT:
        msg = body.get("message")
        if msg is None:
            raise InvalidInput("message is required")
        if not isinstance(msg, str):
            raise InvalidInput("message must be a string")
        if not msg.strip():
            raise InvalidInput("message must not be empty")
        if len(msg) > MAX_TEXT_LENGTH:
            raise InvalidInput(f"message is longer than {MAX_TEXT_LENGTH} characters")
        return {"message": msg}
    caption = body.get("caption")
    if caption is None:
        raise InvalidInput("caption is required")
    if not isinstance(caption, str) or not caption.strip():
        raise InvalidInput("caption must be a non-empty string")
    if len(caption) > MAX_CAPTION_LENGTH:
        raise InvalidInput(f"caption is longer than {MAX_CAPTION_LENGTH} characters")
    options = body.get("options")
    if not isinstance(options, list):
        raise InvalidInput(f"options must be a list of {MIN_POLL_OPTIONS}-{MAX_POLL_OPTIONS} strings")
    if not MIN_POLL_OPTIONS <= len(options) <= MAX_POLL_OPTIONS:
        raise InvalidInput(f"options must have {MIN_POLL_OPTIONS} to {MAX_POLL_OPTIONS} entries, got {len(options)}")
    cleaned: list[str] = []
    for i, opt in enumerate(options):
        if not isinstance(opt, str) or not opt.strip():
            raise InvalidInput(f"options[{i}] must be a non-empty string")
        if len(opt) > MAX_POLL_OPTION_LENGTH:
            raise InvalidInput(f"options[{i}] is longer than {MAX_POLL_OPTION_LENGTH} characters")
        cleaned.append(opt)
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("options must be distinct")
    multiple = body.get("multipleAnswers", False)
    if multiple is None:
        multiple = False
    if not isinstance(multiple, bool):
        raise InvalidInput("multipleAnswers must be true or false")
    return {"caption": caption, "options": cleaned, "multipleAnswers": multiple}
