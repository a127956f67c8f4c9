"""Cloud API webhook payloads shaped like Meta's (the examples of its OpenAPI file), and their signatures."""

from __future__ import annotations

import json
from typing import Any

from wahub.engines.cloud import polls, webhook

PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "419561257915477"
APP_SECRET = "app-secret-for-tests"
VERIFY_TOKEN = "verify-token-for-tests"
ACCESS_TOKEN = "EAAtesttoken123"
CUSTOMER = "201000000001"
POLL_WAMID = "wamid.HBgLMjAxMDAwMDAwMDAxFQIAERgSQzlGQTdBRUE4MTk0QTg1RjM5AA=="
TS = 1750025136


def envelope(value: dict[str, Any], *, phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    """One ``messages`` change for ``phone_number_id``."""
    body = {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id}, **value}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "changes": [{"value": body, "field": "messages"}]}]}


def _inbound(message: dict[str, Any], **kw: Any) -> dict[str, Any]:
    msg = {"from": CUSTOMER, "timestamp": str(TS), **message}
    return envelope({"contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": CUSTOMER}], "messages": [msg]},
                    **kw)


def text(body: str = "Does it come in another color?", **kw: Any) -> dict[str, Any]:
    """An inbound text message."""
    return _inbound({"id": "wamid.TEXT1", "type": "text", "text": {"body": body}}, **kw)


def button_reply(option: str, *, reply_to: str = POLL_WAMID) -> dict[str, Any]:
    """A tap on an interactive reply button of the poll message ``reply_to``."""
    return _inbound({"context": {"from": "15550783881", "id": reply_to}, "id": "wamid.BTN1", "type": "interactive",
                     "interactive": {"type": "button_reply",
                                     "button_reply": {"id": polls.reply_id(option), "title": option[:20]}}})


def list_reply(option: str, *, reply_to: str = POLL_WAMID) -> dict[str, Any]:
    """A choice in an interactive list."""
    return _inbound({"context": {"from": "15550783881", "id": reply_to}, "id": "wamid.LIST1", "type": "interactive",
                     "interactive": {"type": "list_reply",
                                     "list_reply": {"id": polls.reply_id(option), "title": option[:24]}}})


def template_quick_reply(option: str, *, button_text: str | None = None,
                         reply_to: str = POLL_WAMID) -> dict[str, Any]:
    """A tap on a template's quick-reply button (its payload is the option's reply id)."""
    return _inbound({"context": {"from": "15550783881", "id": reply_to}, "id": "wamid.TPL1", "type": "button",
                     "button": {"payload": polls.reply_id(option), "text": button_text or option}})


def status(state: str, *, message_id: str = POLL_WAMID, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One status update (sent / delivered / read / failed) of a message we sent."""
    item: dict[str, Any] = {"id": message_id, "status": state, "timestamp": str(TS + 5), "recipient_id": CUSTOMER}
    if errors is not None:
        item["errors"] = errors
    return envelope({"statuses": [item]})


def statuses(*states: str, message_id: str = POLL_WAMID) -> dict[str, Any]:
    """Several status updates of one message in one call, as Meta batches them."""
    items = [{"id": message_id, "status": s, "timestamp": str(TS + i), "recipient_id": CUSTOMER}
             for i, s in enumerate(states, 1)]
    return envelope({"statuses": items})


def failed_outside_window() -> dict[str, Any]:
    """A ``failed`` status with Graph error 131047 (more than 24 hours since the customer wrote)."""
    return status("failed", errors=[{"code": 131047, "title": "Re-engagement message",
                                     "message": "Re-engagement message",
                                     "error_data": {"details": "Message failed to send because more than 24 hours "
                                                               "have passed since the customer last replied."}}])


def encode(payload: dict[str, Any]) -> bytes:
    """The bytes Meta would post (its compact JSON)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed(payload: dict[str, Any], secret: str = APP_SECRET) -> tuple[bytes, str]:
    """The body and its ``X-Hub-Signature-256`` header value."""
    body = encode(payload)
    return body, webhook.signature(secret, body)
