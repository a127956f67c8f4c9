"""Request bodies of the send actions besides text and polls (field names as the WaAPI SDK sends them)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from wahub.api.schemas import _BOOL_OR_NULL, _CHAT, _KEY, _TEXT, _Body, _documented, _f

_MID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200,
                        "examples": ["3EB0A1B2C3D4E5F60718", "false_201000000001@c.us_3EB0A1B2C3D4E5F60718"]}
_MID_DOC = ("a message id: the bare id wa-hub answered a send with, or the serialized "
            "true|false_<chat>_<id> form; a bare id of a received message needs chatId")


class _Queued(_Body):
    idempotencyKey: Any = _f(_KEY, "same key + same payload = the same message, never sent twice")
    retry: Any = _f(_BOOL_OR_NULL, "true re-queues a failed/canceled item with the same key")


class SendMedia(_Queued):
    """``send-media``: a file from ``mediaUrl`` (fetched at once, size-capped) or ``mediaBase64``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "chatId", example={"chatId": "201000000001@c.us", "mediaUrl": "http://127.0.0.1:8080/parcel.jpg",
                           "mediaCaption": "Your parcel", "idempotencyKey": "order:shop:1001:photo:v1"}))

    chatId: Any = _f(_CHAT)
    mediaUrl: Any = _f({"type": ["string", "null"], "format": "uri", "maxLength": 2000},
                       "http(s) URL of the file (WEBHOOK_ALLOWED_NETWORKS applies); or mediaBase64")
    mediaBase64: Any = _f({"type": ["string", "null"]}, "the file as base64 (a data: URL is accepted)")
    mediaCaption: Any = _f({"type": ["string", "null"], "maxLength": 1024}, "caption (image, video, document)")
    mediaName: Any = _f({"type": ["string", "null"], "maxLength": 255}, "file name shown for a document")
    mimetype: Any = _f({"type": ["string", "null"], "examples": ["image/jpeg"]},
                       "MIME type; default: from the bytes, the server's Content-Type, or the name")
    asVoice: Any = _f(_BOOL_OR_NULL, "send audio as a voice note (ptt)")
    asDocument: Any = _f(_BOOL_OR_NULL, "send as a document (any type)")
    asSticker: Any = _f(_BOOL_OR_NULL, "send a WebP image as a sticker")


class SendLocation(_Queued):
    """``send-location``: a pin."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "chatId", "latitude", "longitude",
        example={"chatId": "201000000001@c.us", "latitude": 30.0444, "longitude": 31.2357,
                 "options": {"name": "Pick-up point", "address": "Tahrir Square, Cairo"}}))

    chatId: Any = _f(_CHAT)
    latitude: Any = _f({"type": "number", "minimum": -90, "maximum": 90})
    longitude: Any = _f({"type": "number", "minimum": -180, "maximum": 180})
    options: Any = _f({"type": ["object", "null"], "properties": {
        "name": {"type": "string"}, "address": {"type": "string"}, "url": {"type": "string"}}})


class SendVCard(_Queued):
    """``send-vcard``: a contact card, from fields or vCard text."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "chatId", "vCard", example={"chatId": "201000000001@c.us",
                                    "vCard": {"fullName": "Shop support", "phoneNumber": "201000000009"}}))

    chatId: Any = _f(_CHAT)
    vCard: Any = _f({"type": ["object", "string"], "properties": {
        "fullName": {"type": "string"}, "displayName": {"type": "string"}, "phoneNumber": {"type": "string"},
        "organization": {"type": "string"}, "email": {"type": "string"}, "vcard": {"type": "string"}}},
        "fullName + phoneNumber (+ organization, email), or vcard: BEGIN:VCARD … END:VCARD")


class React(_Queued):
    """``react-to-message``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "messageId", "reaction", example={"messageId": "3EB0A1B2C3D4E5F60718", "reaction": "👍"}))

    messageId: Any = _f(_MID, _MID_DOC)
    reaction: Any = _f({"type": "string", "maxLength": 16}, 'one emoji; "" removes the reaction')
    chatId: Any = _f({"type": ["string", "null"]}, "the chat of a received message given by its bare id")


class EditMessage(_Queued):
    """``edit-message``: new text for a text message this account sent (within 15 minutes)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "messageId", "message", example={"messageId": "3EB0A1B2C3D4E5F60718", "message": "Order #1001: 2 items"}))

    messageId: Any = _f(_MID, _MID_DOC)
    message: Any = _f({**_TEXT, "maxLength": 65_536})


class DeleteMessage(_Queued):
    """``delete-message-by-id``: delete for everyone."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "messageId", example={"messageId": "3EB0A1B2C3D4E5F60718", "forEveryone": True}))

    messageId: Any = _f(_MID, _MID_DOC)
    forEveryone: Any = _f(_BOOL_OR_NULL, "true (the default); false (this device only) is refused (400)")
    chatId: Any = _f({"type": ["string", "null"]}, "the chat of a received message given by its bare id")


class ForwardMessage(_Queued):
    """``forward-message``: a copy of a message this hub sent, marked "Forwarded", to ``chatId``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "messageId", "chatId", example={"messageId": "3EB0A1B2C3D4E5F60718", "chatId": "201000000002@c.us"}))

    messageId: Any = _f(_MID, "the id of a message this hub sent")
    chatId: Any = _f(_CHAT, "where the copy goes")


class ChatOnly(_Body):
    """``send-seen`` / ``send-typing`` / ``send-stop-typing``."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "chatId", example={"chatId": "201000000001@c.us"}))

    chatId: Any = _f(_CHAT)


class DownloadMedia(_Body):
    """``download-media``: the media of a received message."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_documented(
        "messageId", example={"messageId": "false_201000000001@c.us_3A0C1D2E3F405162"}))

    messageId: Any = _f(_MID, "the serialized id, or the bare id with chatId")
    chatId: Any = _f({"type": ["string", "null"]})
