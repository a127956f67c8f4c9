"""A wa-hub poll as a Cloud API message: reply buttons, a list, or an approved template (pure).

The Cloud API has no poll message. A poll (caption, 2–12 options, multipleAnswers) becomes:

* a **template** with quick-reply buttons when one is chosen for the send or the instance — the
  only kind Meta delivers outside the 24-hour customer service window, i.e. for a
  business-initiated order confirmation. The template's quick-reply buttons, in order, are the
  poll's options; each button gets its option's reply id as payload (≤ 10 buttons);
* otherwise, inside the window, **reply buttons** when there are ≤ 3 options of ≤ 20 characters;
* otherwise a **list** of ≤ 10 rows (titles ≤ 24 characters: a longer option shows its first 23
  characters and "…" as title and its full text, ≤ 72 characters, as the row description);
* with a closed window and no template: :class:`~wahub.engines.cloud.errors.OutsideServiceWindow`.

Every option gets a *reply id*, the button id / row id / quick-reply payload WhatsApp returns
when the customer taps it: ``wahub:o:`` + the option in base64url (UTF-8, unpadded) when that
fits in :data:`MAX_REPLY_ID`, else ``wahub:h:`` + the option's SHA-256 in hex, which the hub
resolves against the options stored with the poll (as it does for whatsmeow's vote hashes). The
same option always gets the same id.

A tap is one choice: each reply is one vote naming that single option (a later tap replaces the
earlier one, as a changed vote does). ``multipleAnswers`` cannot be offered by buttons or lists
and is ignored; the app still receives one ``vote_update`` per tap.

Limits are those of Meta's Cloud API v23.0 OpenAPI description (``ActionObject``,
``SectionObject``, ``BodyObject``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any

from wahub.domain.errors import PermanentSendError
from wahub.engines.cloud.errors import OutsideServiceWindow

SERVICE_WINDOW_MS = 24 * 3600 * 1000
MAX_BUTTONS, MAX_BUTTON_TITLE = 3, 20
MAX_ROWS, MAX_ROW_TITLE, MAX_ROW_DESCRIPTION = 10, 24, 72
MAX_TEMPLATE_BUTTONS = 10
MAX_BODY = 1024  # interactive body text
MAX_LIST_BUTTON = 20
MAX_REPLY_ID = 128  # under every limit: button id 256, row id 200, quick-reply payload
TEXT_PREFIX, HASH_PREFIX = "wahub:o:", "wahub:h:"


@dataclass(frozen=True)
class PollTemplate:
    """An approved template with quick-reply buttons, to send a poll outside the service window.

    ``language`` is the template's language code (``en``, ``ar``, ``en_US``); ``body_parameters``
    fill ``{{1}}``, ``{{2}}``… of its body in order (e.g. the order number and total).
    """

    name: str
    language: str
    body_parameters: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PollTemplate:
        """From ``{"name", "language", "bodyParameters"?}`` (the API / stored shape). Raises ValueError."""
        name, language = data.get("name"), data.get("language")
        params = data.get("bodyParameters", data.get("body_parameters", []))
        if not isinstance(name, str) or not name.strip():
            raise ValueError("template.name must be a non-empty string")
        if not isinstance(language, str) or not language.strip():
            raise ValueError("template.language must be a language code such as 'en' or 'ar'")
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise ValueError("template.bodyParameters must be a list of strings")
        return cls(name=name.strip(), language=language.strip(), body_parameters=tuple(params))

    def to_json(self) -> dict[str, Any]:
        """The stored / API shape (inverse of :meth:`from_json`)."""
        return {"name": self.name, "language": self.language, "bodyParameters": list(self.body_parameters)}


@dataclass(frozen=True)
class Reply:
    """What a reply id says: the chosen option's text, or its SHA-256 (hex) when the text did not fit."""

    option: str | None = None
    option_hash: str | None = None


def reply_id(option: str) -> str:
    """The stable reply id of ``option`` (see the module docstring)."""
    encoded = base64.urlsafe_b64encode(option.encode("utf-8")).decode("ascii").rstrip("=")
    if len(TEXT_PREFIX) + len(encoded) <= MAX_REPLY_ID:
        return TEXT_PREFIX + encoded
    return HASH_PREFIX + hashlib.sha256(option.encode("utf-8")).hexdigest()


def parse_reply_id(value: str) -> Reply | None:
    """The option behind a reply id, or None when ``value`` is not a wa-hub reply id."""
    if value.startswith(TEXT_PREFIX):
        raw = value[len(TEXT_PREFIX):]
        try:
            text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return Reply(option=text) if text else None
    if value.startswith(HASH_PREFIX):
        digest = value[len(HASH_PREFIX):].lower()
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            return Reply(option_hash=digest)
    return None


def window_open(last_inbound_ms: int | None, now_ms: int) -> bool:
    """Whether the 24-hour customer service window is open (the customer wrote within 24 h)."""
    return last_inbound_ms is not None and now_ms - last_inbound_ms < SERVICE_WINDOW_MS


def poll_message(caption: str, options: list[str], *, template: PollTemplate | None, window: bool | None,
                 list_button: str = "Choose") -> dict[str, Any]:
    """The ``type`` + content of the Graph message for a poll.

    ``window`` is whether the service window is open (None when unknown: Graph decides, and answers
    131047 when it is closed). Raises ``OutsideServiceWindow`` (closed window, no template) and
    ``PermanentSendError`` (``invalid_poll`` / ``too_long``) for polls the Cloud API cannot carry.
    """
    _check_options(options)
    if template is not None:
        return _template(template, options)
    if window is False:
        raise OutsideServiceWindow()
    if not caption.strip():
        raise PermanentSendError("a poll needs a caption for its message body", reason="invalid_poll")
    if len(caption) > MAX_BODY:
        raise PermanentSendError(f"the poll caption is {len(caption)} characters; interactive messages allow "
                                 f"{MAX_BODY}", reason="too_long")
    if len(options) <= MAX_BUTTONS and all(len(o) <= MAX_BUTTON_TITLE for o in options):
        return _buttons(caption, options)
    return _list(caption, options, list_button)


def _check_options(options: list[str]) -> None:
    if len(options) < 2 or len(set(options)) != len(options) or any(not o.strip() for o in options):
        raise PermanentSendError("a poll needs at least 2 distinct, non-empty options", reason="invalid_poll")
    if len(options) > MAX_ROWS:
        raise PermanentSendError(f"the Cloud API carries at most {MAX_ROWS} poll options, not {len(options)}",
                                 reason="invalid_poll")


def _buttons(caption: str, options: list[str]) -> dict[str, Any]:
    buttons = [{"type": "reply", "reply": {"id": reply_id(o), "title": o}} for o in options]
    return {"type": "interactive",
            "interactive": {"type": "button", "body": {"text": caption}, "action": {"buttons": buttons}}}


def _list(caption: str, options: list[str], list_button: str) -> dict[str, Any]:
    rows: list[dict[str, str]] = []
    for option in options:
        if len(option) <= MAX_ROW_TITLE:
            rows.append({"id": reply_id(option), "title": option})
        elif len(option) <= MAX_ROW_DESCRIPTION:
            rows.append({"id": reply_id(option), "title": option[:MAX_ROW_TITLE - 1] + "…", "description": option})
        else:
            raise PermanentSendError(f"poll option {option[:30]!r}… is {len(option)} characters; the Cloud API "
                                     f"shows at most {MAX_ROW_DESCRIPTION}", reason="too_long")
    if len({r["title"] for r in rows}) != len(rows):
        raise PermanentSendError(f"poll options must differ within their first {MAX_ROW_TITLE - 1} characters "
                                 "to be told apart in a list", reason="invalid_poll")
    button = list_button.strip()[:MAX_LIST_BUTTON] or "Choose"
    return {"type": "interactive",
            "interactive": {"type": "list", "body": {"text": caption},
                            "action": {"button": button, "sections": [{"rows": rows}]}}}


def _template(template: PollTemplate, options: list[str]) -> dict[str, Any]:
    if len(options) > MAX_TEMPLATE_BUTTONS:
        raise PermanentSendError(f"a template carries at most {MAX_TEMPLATE_BUTTONS} quick-reply buttons",
                                 reason="invalid_poll")
    components: list[dict[str, Any]] = []
    if template.body_parameters:
        components.append({"type": "body",
                           "parameters": [{"type": "text", "text": p} for p in template.body_parameters]})
    for index, option in enumerate(options):
        # Graph numbers a template's buttons from 0; Meta's OpenAPI file's `index` pattern
        # (^[2-6, 11-14]$) contradicts its own example ("0") and the live API (docs/cloud-api.md).
        components.append({"type": "button", "sub_type": "quick_reply", "index": str(index),
                           "parameters": [{"type": "payload", "payload": reply_id(option)}]})
    return {"type": "template",
            "template": {"name": template.name, "language": {"policy": "deterministic", "code": template.language},
                         "components": components}}
