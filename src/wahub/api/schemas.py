"""Request bodies as documented in OpenAPI. Fields are loosely typed on purpose: the runtime
validates them and answers 400 with a message naming the field (the existing wa-hub's style)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class WebhookConfig(_Body):
    """Where events go and which ones (empty list = all)."""

    url: Any = Field(None, description="http(s) URL receiving POSTed events")
    events: Any = Field(None, description="event names to deliver; empty or absent = all")
    secret: Any = Field(None, description="per-instance HMAC secret; falls back to WEBHOOK_SECRET")


class CreateInstance(_Body):
    """``POST /instances``."""

    name: Any = Field(None, description="instance name; the id is the sanitised name",
                      examples=["WASP-shop.myshopify.com"])
    webhook: WebhookConfig | None = None


class UpdateInstance(_Body):
    """``PUT /instances/{id}``."""

    name: Any = None
    webhook: WebhookConfig | None = None
    limits: Any = Field(None, description="perMinute (1-10,000), perHour (1-1,000,000), intervalMs (0-86,400,000) "
                                          "overrides; null resets one to the default")


class SendMessage(_Body):
    """``send-message``: text sent verbatim."""

    chatId: Any = Field(None, examples=["201000000001@c.us"])
    message: Any = Field(None, examples=["Your order #1001 is confirmed"])
    idempotencyKey: Any = Field(None, examples=["order:shop:1001:customerAck:v1"])
    retry: Any = Field(None, description="true re-queues a failed/canceled item with the same key")


class CreatePoll(_Body):
    """``create-poll``: 2-12 distinct options."""

    chatId: Any = Field(None, examples=["201000000001@c.us"])
    caption: Any = Field(None, examples=["Confirm your order #1001?"])
    options: Any = Field(None, examples=[["Confirm", "Cancel"]])
    multipleAnswers: Any = False
    idempotencyKey: Any = Field(None, examples=["order:shop:1001:confirmPoll:v1"])
    retry: Any = None


class PairingCode(_Body):
    """``request-pairing-code``."""

    phoneNumber: Any = Field(None, examples=["201000000001"])


class RegisteredUser(_Body):
    """``is-registered-user``."""

    contactId: Any = Field(None, examples=["201000000001@c.us"])


class Restart(_Body):
    """``POST /instances/{id}/restart``."""

    type: Any = Field("soft", description='"soft" (reconnect) or "hard" (rebuild the engine)')


class Replay(_Body):
    """Replay dead letters: one ``eventId`` or all of the instance."""

    eventId: Any = None


class PollVotes(_Body):
    """``get-poll-votes``."""

    messageId: Any = None


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
