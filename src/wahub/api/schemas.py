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
    engine: Any = Field(None, description='"cloud" (Meta\'s Cloud API), or the hub\'s WAHUB_ENGINE (the default)',
                        examples=["cloud"])
    cloud: Any = Field(None, description="engine cloud: phoneNumberId, wabaId, accessToken, appSecret, verifyToken "
                                         "(stored encrypted, never shown again), optional pollTemplate "
                                         "{name, language} and listButton")


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
    template: Any = Field(None, description="cloud instances: an approved template {name, language, bodyParameters} "
                                            "with one quick-reply button per option (reaches a chat outside the "
                                            "24-hour window); other engines ignore it")
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
