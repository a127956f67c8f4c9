"""Inbound webhook bodies in the OpenAPI document (``webhooks`` section): what wa-hub POSTs, not routes it serves.

The models only describe; the bodies are built by :mod:`wahub.runtime.inboundshapes` and
:mod:`wahub.runtime.inbound`. ``docs/webhooks.md`` is the full reference (signing, retries).
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field


class InboundLocation(BaseModel):
    """A shared location."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class _From(BaseModel):
    from_: str = Field(alias="from", description="the sender: bare digits for a person, the full id otherwise")
    fromId: str = Field(description="the sender's full id (…@c.us, …@lid)")
    fromAlt: str | None = Field(description="the sender's other id when known: the phone behind an @lid or the "
                                            "@lid of a phone (told by WhatsApp or remembered by wa-hub)")
    chatId: str
    timestamp: int = Field(description="epoch seconds")
    timestampMs: int = Field(description="epoch ms")


class InboundMessage(_From):
    """An inbound message (never our own)."""

    id: str
    body: str = Field(description="text; the caption of media; the vCard of a vcard; '' otherwise")
    text: str
    type: Literal["chat", "image", "video", "audio", "ptt", "document", "sticker", "vcard", "multi_vcard",
                  "location"]
    fromMe: bool
    pushName: str | None
    hasMedia: bool = Field(description="media kinds: the bytes stay with WhatsApp")
    mimetype: str | None
    caption: str | None
    filename: str | None = Field(description="documents")
    location: InboundLocation | None
    vCards: list[str]
    hasQuotedMsg: bool
    quotedMsgId: str | None = Field(description="the id of the message this one replies to")
    quotedMsgBody: str | None = Field(description="its text, when the quoted message carried text")
    quotedParticipant: str | None


class InboundMessageData(BaseModel):
    message: InboundMessage


class InboundMessageEvent(BaseModel):
    """``message``."""

    event: Literal["message"]
    instanceId: str
    data: InboundMessageData


class InboundReaction(_From):
    """A reaction; ``reaction`` "" (and ``removed`` true) when the sender took it back."""

    id: str = Field(description="the reaction's own message id")
    msgId: str = Field(description="the message reacted to")
    reaction: str
    removed: bool
    senderId: str


class InboundReactionData(BaseModel):
    reaction: InboundReaction


class InboundReactionEvent(BaseModel):
    """``message_reaction``."""

    event: Literal["message_reaction"]
    instanceId: str
    data: InboundReactionData


class ChangedMessage(_From):
    id: str = Field(description="the edited or deleted message")
    fromMe: bool
    body: str | None = Field(None, description="edits: the new text (also in ``text``)")
    type: Literal["revoked"] | None = Field(None, description="deletes: always revoked")


class EditData(BaseModel):
    originalMessageId: str
    newBody: str
    message: ChangedMessage


class EditEvent(BaseModel):
    """``message_edit``: a message was edited by its sender."""

    event: Literal["message_edit"]
    instanceId: str
    data: EditData


class RevokeData(BaseModel):
    originalMessageId: str
    message: ChangedMessage


class RevokeEvent(BaseModel):
    """``message_revoke``: a message was deleted for everyone by its sender."""

    event: Literal["message_revoke"]
    instanceId: str
    data: RevokeData


class PollVote(BaseModel):
    voter: str
    selectedOptions: list[str] | None = Field(description="option texts; [] = retracted; null when decryptFailed")
    timestamp: int = Field(description="the vote's time, epoch ms")
    pollMessageId: str


class VoteUpdateData(BaseModel):
    vote: PollVote
    voterId: str
    voterLid: str | None = Field(None, description="the voter's @lid, when known")
    voterPhone: str | None = Field(None, description="the voter's phone digits, when known")
    chatId: str
    idempotencyKey: str | None
    queueId: str | None
    caption: str | None
    options: list[str] | None
    pollKnown: bool
    decryptFailed: bool = Field(description="the vote could not be read: ask again; the voter's known choice "
                                            "stays their latest vote")
    unresolvedOptionHashes: list[str] | None = None


class VoteUpdateEvent(BaseModel):
    """``vote_update``."""

    event: Literal["vote_update"]
    instanceId: str
    data: VoteUpdateData


def install(app: FastAPI) -> None:
    """Describe the inbound events in ``app``'s OpenAPI ``webhooks``."""

    @app.webhooks.post("message")
    def message(body: InboundMessageEvent) -> None:
        """A customer sent a message: text, media, contact card(s), location, or a reply (``quotedMsgId``)."""

    @app.webhooks.post("message_reaction")
    def message_reaction(body: InboundReactionEvent) -> None:
        """A customer reacted to a message (or removed a reaction)."""

    @app.webhooks.post("message_edit")
    def message_edit(body: EditEvent) -> None:
        """A customer edited a message: ``newBody`` is its text now."""

    @app.webhooks.post("message_revoke")
    def message_revoke(body: RevokeEvent) -> None:
        """A customer deleted a message for everyone."""

    @app.webhooks.post("vote_update")
    def vote_update(body: VoteUpdateEvent) -> None:
        """A new vote on a poll (a retraction included), or one that could not be decrypted."""
