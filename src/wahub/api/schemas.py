"""Request bodies as documented in OpenAPI.

The documented schema is the contract (types, required fields, examples a user can send), but the
body is parsed loosely and the runtime validates it, so a bad field is answered 400 with the
existing wa-hub's message naming the field (``message is required``) rather than a validator's.
Unknown fields are accepted and ignored, as the existing wa-hub did.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wahub.runtime.events import WEBHOOK_EVENTS


def _documented(*required: str, example: dict[str, Any] | None = None) -> Any:
    """``json_schema_extra`` for a body: its required fields and one example a user can send."""

    def shape(schema: dict[str, Any]) -> None:
        schema.pop("additionalProperties", None)  # accepted, but not shown as "additionalProp1"
        if required:
            schema["required"] = list(required)
        if example is not None:
            schema["examples"] = [example]

    return shape


def _f(schema: dict[str, Any], description: str | None = None, default: Any = None) -> Any:
    """A field parsed as anything (the runtime names a bad one) and documented as ``schema``."""
    return Field(default, description=description, json_schema_extra=schema)


_STR: dict[str, Any] = {"type": "string"}
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": r"\S"}
_CHAT: dict[str, Any] = {"type": "string", "minLength": 1, "examples": ["201000000001@c.us"]}
_KEY: dict[str, Any] = {"type": ["string", "null"], "minLength": 1, "maxLength": 200,
                        "examples": ["order:shop:1001:customerAck:v1"],
                        "description": "1-200 printable characters, not starting with auto:"}
_BOOL_OR_NULL: dict[str, Any] = {"type": ["boolean", "null"]}
_URL = "http://127.0.0.1:3000/webhooks/whatsapp"  # a receiver on the same host (allowed by default)


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class WebhookConfig(_Body):
    """Where events go and which ones (empty list or null = all)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "url", example={"url": _URL, "events": ["message", "message_ack"]}))

    url: Any = _f({"type": "string", "format": "uri", "minLength": 1, "maxLength": 2000, "examples": [_URL]},
                  "http(s) URL receiving POSTed events (loopback and public hosts; WEBHOOK_ALLOWED_NETWORKS)")
    events: Any = _f({"type": ["array", "null"], "items": {"type": "string", "enum": sorted(WEBHOOK_EVENTS)}},
                     "event names to deliver; empty or absent = all")
    secret: Any = _f({"type": ["string", "null"], "maxLength": 512},
                     "per-instance HMAC secret; falls back to WEBHOOK_SECRET")


class WebhookUpdate(_Body):
    """The webhook fields to change; absent fields stay as they are."""

    model_config = ConfigDict(extra="allow",
                              json_schema_extra=_documented(example={"events": ["message", "message_ack"]}))

    url: Any = _f({"type": ["string", "null"], "maxLength": 2000, "examples": [_URL]}, "null removes the webhook")
    events: Any = _f({"type": ["array", "null"], "items": {"type": "string", "enum": sorted(WEBHOOK_EVENTS)}})
    secret: Any = _f({"type": ["string", "null"], "maxLength": 512})


_LIMITS: dict[str, Any] = {"type": ["object", "null"], "additionalProperties": False, "properties": {
    "perMinute": {"type": ["integer", "null"], "minimum": 1, "maximum": 10_000},
    "perHour": {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000},
    "intervalMs": {"type": ["integer", "null"], "minimum": 0, "maximum": 86_400_000}}}


class CreateInstance(_Body):
    """``POST /instances``: with no body at all (the WaAPI SDK) the id is generated."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "name", example={"name": "WASP-shop.myshopify.com", "webhook": {"url": _URL}}))

    name: Any = _f({**_TEXT, "maxLength": 100, "examples": ["WASP-shop.myshopify.com"]},
                   "instance name; the id is the sanitised name")
    webhook: WebhookConfig | None = None
    engine: Any = _f({"type": ["string", "null"], "enum": ["sandbox", "whatsmeow", "cloud", None],
                      "examples": ["cloud"]}, '"cloud" (Meta\'s Cloud API), or the hub\'s WAHUB_ENGINE (the default)')
    cloud: Any = _f({"type": ["object", "null"]}, "engine cloud: phoneNumberId, wabaId, accessToken, appSecret, "
                    "verifyToken (stored encrypted, never shown again), optional pollTemplate {name, language} and "
                    "listButton")
    defaultCountryCode: Any = _f({"type": ["string", "integer", "null"], "pattern": "^(\\+?[1-9][0-9]{0,2})?$",
                                  "minimum": 1, "maximum": 999, "examples": ["20"]},
                                 "country calling code completing a national number (e.g. 20); empty or null: none")
    limits: Any = _f(_LIMITS, "per-instance rate limits (perMinute, perHour, intervalMs); absent or null: the "
                     "server defaults")


class UpdateInstance(_Body):
    """``PUT /instances/{id}``: only the fields given change."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        example={"webhook": {"url": _URL, "events": []}, "limits": {"perMinute": 20}}))

    name: Any = _f({"type": ["string", "null"], "maxLength": 100})
    webhook: WebhookUpdate | None = None
    limits: Any = _f(_LIMITS, "per-instance overrides; null resets one to the server default")


class SendMessage(_Body):
    """``send-message``: text sent verbatim."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "chatId", "message", example={"chatId": "201000000001@c.us", "message": "Your order #1001 is confirmed",
                                      "idempotencyKey": "order:shop:1001:customerAck:v1"}))

    chatId: Any = _f(_CHAT, "phone number, c.us / s.whatsapp.net / lid / g.us chat id")
    message: Any = _f({**_TEXT, "maxLength": 65_536, "examples": ["Your order #1001 is confirmed"]})
    idempotencyKey: Any = _f(_KEY, "same key + same payload = the same message, never sent twice")
    retry: Any = _f(_BOOL_OR_NULL, "true re-queues a failed/canceled item with the same key")


class CreatePoll(_Body):
    """``create-poll``: 2-12 distinct options."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "chatId", "caption", "options",
        example={"chatId": "201000000001@c.us", "caption": "Confirm your order #1001?",
                 "options": ["Confirm", "Cancel"], "idempotencyKey": "order:shop:1001:confirmPoll:v1"}))

    chatId: Any = _f(_CHAT)
    caption: Any = _f({**_TEXT, "maxLength": 255, "examples": ["Confirm your order #1001?"]})
    options: Any = _f({"type": "array", "minItems": 2, "maxItems": 12, "uniqueItems": True,
                       "items": {**_TEXT, "maxLength": 100}, "examples": [["Confirm", "Cancel"]]})
    multipleAnswers: Any = _f(_BOOL_OR_NULL, default=False)
    template: Any = _f({"type": ["object", "null"]},
                       "cloud instances: an approved template {name, language, bodyParameters} with one quick-reply "
                       "button per option (reaches a chat outside the 24-hour window); other engines ignore it")
    idempotencyKey: Any = _f(_KEY)
    retry: Any = _f(_BOOL_OR_NULL)


class PairingCode(_Body):
    """``request-pairing-code``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "phoneNumber", example={"phoneNumber": "201000000001"}))

    phoneNumber: Any = _f({"type": "string", "pattern": "^[0-9]{6,15}$", "examples": ["201000000001"]},
                          "international number, digits only")


class RegisteredUser(_Body):
    """``is-registered-user``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "contactId", example={"contactId": "201000000001@c.us"}))

    contactId: Any = _f(_CHAT)


class Restart(_Body):
    """``POST /instances/{id}/restart``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(example={"type": "soft"}))

    type: Any = _f({"type": "string", "enum": ["soft", "hard"]}, '"soft" (reconnect) or "hard" (rebuild the engine)',
                   default="soft")


class Replay(_Body):
    """Replay dead letters: one ``eventId`` or all of the instance."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(example={}))

    eventId: Any = _f({"type": ["string", "null"]}, "one dead letter; absent or null replays all")


class PollVotes(_Body):
    """``get-poll-votes``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "messageId", example={"messageId": "3EB0C767D26A1D2E8F4B"}))

    messageId: Any = _f({"type": "string", "minLength": 1}, "the poll's WhatsApp message id")


class SandboxLocation(_Body):
    """A shared location."""

    latitude: Any = Field(None, examples=[30.0444])
    longitude: Any = Field(None, examples=[31.2357])
    name: Any = Field(None, examples=["Tahrir Square"])
    address: Any = Field(None, examples=["Cairo"])


class SandboxMessage(_Body):
    """Inject an inbound message of any kind (sandbox engine)."""

    from_: Any = Field(None, alias="from", examples=["201000000001"], description="the sender")
    fromAlt: Any = Field(None, description="the sender's other id (the phone behind an @lid)")
    chatId: Any = Field(None, description="the chat (default: the sender's)")
    type: Any = Field("chat", description="chat, image, video, audio, ptt, document, sticker, vcard, multi_vcard, "
                                          "location")
    text: Any = Field(None, description="body; required for chat (media default to their caption)")
    messageId: Any = None
    caption: Any = None
    mimetype: Any = Field(None, examples=["image/jpeg"])
    filename: Any = None
    hasMedia: Any = Field(None, description="default: true for media types")
    mediaBase64: Any = Field(None, description="media types: the file download-media answers for this message")
    location: SandboxLocation | None = Field(None, description="required for type location")
    vCards: Any = Field(None, description="vCard texts; required for vcard and multi_vcard")
    quotedMsgId: Any = Field(None, description="the message this one replies to")
    quotedMsgBody: Any = None
    quotedParticipant: Any = None


class SandboxReaction(_Body):
    """Inject a reaction (sandbox engine)."""

    from_: Any = Field(None, alias="from", examples=["201000000001"])
    messageId: Any = Field(None, description="the message reacted to")
    reaction: Any = Field(None, examples=["👍"], description='the emoji; "" removes the reaction')
    chatId: Any = None


class SandboxChange(_Body):
    """Inject an edit (``text`` = the new body) or a delete-for-everyone of ``messageId`` (sandbox engine)."""

    from_: Any = Field(None, alias="from", examples=["201000000001"])
    messageId: Any = Field(None, description="the edited or deleted message")
    text: Any = Field(None, description="edits only: the new text")
    chatId: Any = None


class SandboxVote(_Body):
    """Inject a poll vote (sandbox engine)."""

    pollMessageId: Any = None
    voter: Any = Field(None, examples=["201000000001"])
    voterAlt: Any = Field(None, description="the voter's other id (the phone behind an @lid)")
    selectedOptions: Any = Field(None, examples=[["Confirm"]], description="[] retracts the vote")
    timestamp: Any = Field(None, description="the vote's time, epoch ms")
    asHashes: Any = Field(False, description="send the options as SHA-256 hashes, as whatsmeow reports them")
    decryptFailed: Any = Field(False, description="a vote whose choice could not be read (selectedOptions ignored)")
