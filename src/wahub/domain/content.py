"""Content validation of a send, one rule per item kind, with WhatsApp's length and option limits.

``validate(kind, body)`` returns the fields stored with the item (and fingerprinted for its
idempotency key). Media bytes arrive already fetched and checked by :mod:`wahub.runtime.media`
(``mediaBase64`` + ``mimetype``); targeting kinds (reaction, edit, revoke) arrive with the target
already resolved (``messageId``, ``fromMe``, ``participant``) by :mod:`wahub.runtime.targets`.
"""

from __future__ import annotations

import math
from typing import Any

from wahub.domain import media
from wahub.domain.errors import InvalidInput
from wahub.domain.outbox import (
    MAX_CAPTION_LENGTH,
    MAX_FILENAME_LENGTH,
    MAX_MEDIA_CAPTION_LENGTH,
    MAX_POLL_OPTION_LENGTH,
    MAX_POLL_OPTIONS,
    MAX_TEXT_LENGTH,
    MAX_VCARD_LENGTH,
    MIN_POLL_OPTIONS,
    ItemKind,
)

MAX_REACTION_LENGTH = 16  # one emoji, with its modifiers and joiners
FORWARDABLE = (ItemKind.TEXT, ItemKind.MEDIA, ItemKind.LOCATION, ItemKind.VCARD, ItemKind.POLL)


def validate(kind: ItemKind, body: dict[str, Any]) -> dict[str, Any]:
    """The content fields of a send, validated; InvalidInput names the bad field."""
    rule = _RULES.get(kind)
    if rule is not None:
        return rule(body)
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


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise InvalidInput(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if required and not value.strip():
        raise InvalidInput(f"{name} must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def _media(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("mediaBase64")
    if not isinstance(data, str) or not data:
        raise InvalidInput("mediaBase64 or mediaUrl is required")
    mime = media.normalize_mimetype(body.get("mimetype"), "mimetype")
    caption = _text(body, "mediaCaption", MAX_MEDIA_CAPTION_LENGTH)
    filename = _text(body, "mediaName", MAX_FILENAME_LENGTH)
    if filename is not None and ("/" in filename or "\\" in filename):
        raise InvalidInput("mediaName must be a file name, not a path")
    mtype = media.media_type(mime, as_voice=_flag(body, "asVoice"), as_document=_flag(body, "asDocument"),
                             as_sticker=_flag(body, "asSticker"))
    if caption is not None and mtype in ("audio", "ptt", "sticker"):
        raise InvalidInput(f"mediaCaption cannot go with {mtype} (WhatsApp shows no caption on it)")
    if mtype == "document" and filename is None:
        filename = media.default_filename(mime, mtype)
    size = len(data) * 3 // 4 - data[-2:].count("=")
    fields: dict[str, Any] = {"mediaType": mtype, "mimetype": mime, "data": data, "size": size}
    if caption is not None:
        fields["caption"] = caption
    if filename is not None:
        fields["filename"] = filename
    return fields


def _number(body: dict[str, Any], name: str, limit: float) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} is required (a number from {-limit:g} to {limit:g})")
    if not -limit <= value <= limit:
        raise InvalidInput(f"{name} must be from {-limit:g} to {limit:g}, got {value}")
    return float(value)


def _location(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"latitude": _number(body, "latitude", 90), "longitude": _number(body, "longitude", 180)}
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidInput("options must be an object with name, address and/or url")
    unknown = set(options) - {"name", "address", "url"}
    if unknown:
        raise InvalidInput(f"options has unknown keys {sorted(unknown)}; known: name, address, url")
    for key in ("name", "address", "url"):
        value = _text(options, key, 1000)
        if value is not None:
            fields[key] = value
    return fields


def _vcard(body: dict[str, Any]) -> dict[str, Any]:
    card = body.get("vCard")
    if isinstance(card, str):
        card = {"vcard": card}
    if not isinstance(card, dict):
        raise InvalidInput("vCard is required: an object with fullName and phoneNumber, or with vcard (the text)")
    raw = card.get("vcard")
    name = card.get("displayName") or card.get("fullName") or card.get("name") \
        or " ".join(str(card.get(k)) for k in ("firstName", "lastName") if card.get(k))
    if raw is not None:
        if not isinstance(raw, str) or not raw.lstrip().upper().startswith("BEGIN:VCARD") \
                or "END:VCARD" not in raw.upper():
            raise InvalidInput("vCard.vcard must be vCard text (BEGIN:VCARD … END:VCARD)")
        if not name:
            name = next((line[3:].strip() for line in raw.splitlines() if line.upper().startswith("FN:")), "")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("vCard.fullName (or displayName) is required: the name shown on the card")
    if raw is None:
        phone = card.get("phoneNumber") or card.get("number")
        if not isinstance(phone, str) or not any(ch.isdigit() for ch in phone):
            raise InvalidInput("vCard.phoneNumber is required (digits with the country code)")
        for key in ("organization", "email"):
            if card.get(key) is not None and not isinstance(card[key], str):
                raise InvalidInput(f"vCard.{key} must be a string")
        raw = media.build_vcard(name.strip(), phone, card.get("organization"), card.get("email"))
    if len(raw) > MAX_VCARD_LENGTH:
        raise InvalidInput(f"vCard is longer than {MAX_VCARD_LENGTH} characters")
    return {"vcard": raw, "displayName": name.strip()[:MAX_FILENAME_LENGTH]}


def _target(body: dict[str, Any]) -> dict[str, Any]:
    mid = body.get("messageId")
    if not isinstance(mid, str) or not mid.strip() or len(mid) > 128:
        raise InvalidInput("messageId is required (the id of the message, at most 128 characters)")
    participant = body.get("participant")
    if participant is not None and not isinstance(participant, str):
        raise InvalidInput("participant must be a chat id string")
    fields: dict[str, Any] = {"messageId": mid.strip(), "fromMe": _flag(body, "fromMe")}
    if participant:
        fields["participant"] = participant
    after = body.get("after")  # the earlier change of the same message this one follows (see runtime.sendactions)
    if isinstance(after, str) and after:
        fields["after"] = after
    return fields


def _reaction(body: dict[str, Any]) -> dict[str, Any]:
    emoji = body.get("reaction")
    if not isinstance(emoji, str):
        raise InvalidInput('reaction is required: an emoji, or "" to remove the reaction')
    if len(emoji) > MAX_REACTION_LENGTH or any(ch.isalnum() or ch.isspace() for ch in emoji):
        raise InvalidInput('reaction must be one emoji (or "" to remove the reaction)')
    return {**_target(body), "reaction": emoji}


def _edit(body: dict[str, Any]) -> dict[str, Any]:
    fields = _target(body)
    if not fields["fromMe"]:
        raise InvalidInput("messageId: only a message this account sent can be edited")
    return {**fields, "message": _text(body, "message", MAX_TEXT_LENGTH, required=True)}


def _revoke(body: dict[str, Any]) -> dict[str, Any]:
    return _target(body)


def _forward(body: dict[str, Any]) -> dict[str, Any]:
    mid = body.get("messageId")
    source = body.get("sourceKind")
    if not isinstance(mid, str) or not mid:
        raise InvalidInput("messageId is required")
    if source not in {k.value for k in FORWARDABLE}:
        raise InvalidInput(f"messageId: a {source} message cannot be forwarded")
    content = body.get("content")
    if not isinstance(content, dict):
        raise InvalidInput("messageId: the message's content is not known")
    return {"messageId": mid, "sourceKind": source, "content": content}


_RULES = {ItemKind.MEDIA: _media, ItemKind.LOCATION: _location, ItemKind.VCARD: _vcard,
          ItemKind.REACTION: _reaction, ItemKind.EDIT: _edit, ItemKind.REVOKE: _revoke,
          ItemKind.FORWARD: _forward}
