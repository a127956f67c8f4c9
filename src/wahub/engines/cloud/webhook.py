"""Meta's webhook calls for the Cloud API: signature, verification handshake, payload parsing (pure).

* ``POST``: Meta signs the exact body with the app secret, ``X-Hub-Signature-256: sha256=<hex HMAC>``;
  :func:`signature_valid` checks it in constant time. Bodies are capped (:data:`MAX_BODY_BYTES`)
  before anything reads them.
* ``GET``: the subscription handshake ``hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``;
  :func:`challenge` answers the challenge when the token matches (constant time).
* :func:`parse` turns a payload (``object: whatsapp_business_account``) into engine events:
  text → :class:`~wahub.engines.base.InboundMessage`; a button / list reply or a template
  quick-reply whose id is a wa-hub reply id (:mod:`.polls`) → :class:`~wahub.engines.base.PollVote`
  on the message it answers (``context.id``); statuses sent / delivered / read →
  :class:`~wahub.engines.base.Receipt` (``server`` / ``delivered`` / ``read``); ``failed`` →
  :class:`DeliveryFailed` with the Graph error. Changes for another phone number id are ignored,
  and so are parts the engine does not use (media without caption, reactions, system messages).

Chat ids come out in wa-hub's external form (``<digits>@c.us``); timestamps in epoch ms.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from wahub.engines import base
from wahub.engines.cloud import errors, polls

MAX_BODY_BYTES = 512 * 1024  # Meta batches at most 1,000 updates; real payloads are a few KiB
SIGNATURE_HEADER = "X-Hub-Signature-256"
_ACKS = {"sent": "server", "delivered": "delivered", "read": "read"}


@dataclass(frozen=True)
class DeliveryFailed:
    """Meta reported a sent message as ``failed`` (``code``/``title`` from the status's first error)."""

    message_id: str
    chat_id: str | None
    timestamp: int
    code: int | None
    title: str
    reason: str  # wa-hub's reason for the code (errors.classify), e.g. ``outside_service_window``


CloudEvent = base.EngineEvent | DeliveryFailed


def signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_valid(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is Meta's signature of ``body`` under ``app_secret`` (constant-time compare)."""
    if not header or not app_secret:
        return False
    return hmac.compare_digest(signature(app_secret, body).encode("ascii"), header.strip().encode("utf-8"))


def challenge(verify_token: str, mode: str | None, token: str | None, hub_challenge: str | None) -> str | None:
    """The ``hub.challenge`` to echo when ``mode`` is ``subscribe`` and ``token`` matches; else None."""
    if mode != "subscribe" or token is None or hub_challenge is None or not verify_token:
        return None
    if not hmac.compare_digest(verify_token.encode("utf-8"), token.encode("utf-8")):
        return None
    return hub_challenge


def parse(payload: Any, *, phone_number_id: str) -> list[CloudEvent]:
    """Events in a webhook payload addressed to ``phone_number_id``, in payload order. Never raises."""
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return []
    events: list[CloudEvent] = []
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field") != "messages" or not isinstance(value, dict):
                continue
            metadata = value.get("metadata")
            if not isinstance(metadata, dict) or str(metadata.get("phone_number_id")) != phone_number_id:
                continue
            names = {str(c.get("wa_id")): _str(_get(c, "profile", "name")) for c in _dicts(value.get("contacts"))}
            for message in _dicts(value.get("messages")):
                event = _message(message, names)
                if event is not None:
                    events.append(event)
            for status in _dicts(value.get("statuses")):
                receipt = _status(status)
                if receipt is not None:
                    events.append(receipt)
    return events


def _message(msg: dict[str, Any], names: dict[str, str | None]) -> base.InboundMessage | base.PollVote | None:
    sender_digits, message_id = _str(msg.get("from")), _str(msg.get("id"))
    if not sender_digits or not message_id:
        return None
    chat = f"{sender_digits}@c.us"
    ts = _ms(msg.get("timestamp"))
    kind = msg.get("type")
    reply_to = _str(_get(msg, "context", "id"))
    text: str | None = None
    if kind == "text":
        text = _str(_get(msg, "text", "body"))
    elif kind == "interactive":
        interactive = msg.get("interactive")
        chosen = interactive.get(str(interactive.get("type"))) if isinstance(interactive, dict) else None
        if isinstance(chosen, dict):
            vote = _vote(_str(chosen.get("id")), reply_to, chat, ts)
            if vote is not None:
                return vote
            text = _str(chosen.get("title"))
    elif kind == "button":  # a template's quick-reply button
        vote = _vote(_str(_get(msg, "button", "payload")), reply_to, chat, ts)
        if vote is not None:
            return vote
        text = _str(_get(msg, "button", "text"))
    elif kind in ("image", "video", "document"):
        text = _str(_get(msg, str(kind), "caption"))
    if text is None:
        return None
    return base.InboundMessage(message_id=message_id, chat_id=chat, sender=chat, text=text, timestamp=ts,
                               push_name=names.get(sender_digits))


def _vote(reply: str | None, poll_message_id: str | None, chat: str, ts: int) -> base.PollVote | None:
    parsed = polls.parse_reply_id(reply) if reply else None
    if parsed is None or not poll_message_id:
        return None
    if parsed.option is not None:
        return base.PollVote(poll_message_id=poll_message_id, chat_id=chat, voter=chat, timestamp=ts,
                             selected_options=(parsed.option,))
    return base.PollVote(poll_message_id=poll_message_id, chat_id=chat, voter=chat, timestamp=ts,
                         selected_hashes=(str(parsed.option_hash),))


def _status(status: dict[str, Any]) -> base.Receipt | DeliveryFailed | None:
    message_id, state = _str(status.get("id")), status.get("status")
    if not message_id:
        return None
    recipient = _str(status.get("recipient_id"))
    chat = f"{recipient}@c.us" if recipient and recipient.isdigit() else None
    ts = _ms(status.get("timestamp"))
    if state in _ACKS:
        return base.Receipt(message_ids=(message_id,), ack=_ACKS[str(state)], chat_id=chat, timestamp=ts)
    if state == "failed":
        first = next(iter(_dicts(status.get("errors"))), {})
        code = first.get("code") if isinstance(first.get("code"), int) else None
        title = _str(first.get("title")) or _str(first.get("message")) or "failed"
        reason = errors.classify(code).reason if code is not None else "failed"
        return DeliveryFailed(message_id=message_id, chat_id=chat, timestamp=ts, code=code, title=title,
                              reason=reason)
    return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _get(obj: dict[str, Any], *keys: str) -> Any:
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) != "" else None


def _ms(value: Any) -> int:
    try:
        return int(value) * 1000
    except (TypeError, ValueError):
        return 0
