"""WhatsApp ``Message`` protobufs for the sends besides text and polls, built the way whatsmeow builds them.

Used by the worker (neonize is imported inside the functions, after the worker set its
environment). Media is uploaded first (``client.upload``: encrypted with a fresh media key) and the
message carries the upload's URL, hashes and key. Reactions, edits and revokes name their target by
a ``MessageKey``; an edit is whatsmeow's ``BuildEdit`` shape (``editedMessage`` → protocol message
``MESSAGE_EDIT``), a revoke its ``BuildRevoke`` shape (protocol message ``REVOKE``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

# media type → (Message field, neonize MediaType name used for the upload's keys)
MEDIA_FIELDS = {"image": ("imageMessage", "MediaImage"), "video": ("videoMessage", "MediaVideo"),
                "audio": ("audioMessage", "MediaAudio"), "ptt": ("audioMessage", "MediaAudio"),
                "document": ("documentMessage", "MediaDocument"), "sticker": ("stickerMessage", "MediaImage")}


def _forwarded() -> Any:
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo

    return ContextInfo(isForwarded=True, forwardingScore=1)


def media(client: Any, media_type: str, mimetype: str, data: bytes, caption: str | None, filename: str | None,
          forwarded: bool = False) -> Any:
    """Upload ``data`` and build the media message of ``media_type`` (see :data:`MEDIA_FIELDS`)."""
    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as pb
    from neonize.utils.enum import MediaType

    field, upload_kind = MEDIA_FIELDS[media_type]
    up = client.upload(data, MediaType[upload_kind])
    common: dict[str, Any] = {"URL": up.url, "directPath": up.DirectPath, "mediaKey": up.MediaKey,
                              "fileEncSHA256": up.FileEncSHA256, "fileSHA256": up.FileSHA256,
                              "fileLength": up.FileLength, "mimetype": mimetype}
    if forwarded:
        common["contextInfo"] = _forwarded()
    if field == "imageMessage":
        sub: Any = pb.ImageMessage(caption=caption or None, **common)
    elif field == "videoMessage":
        sub = pb.VideoMessage(caption=caption or None, **common)
    elif field == "audioMessage":
        sub = pb.AudioMessage(PTT=media_type == "ptt", **common)
    elif field == "documentMessage":
        sub = pb.DocumentMessage(caption=caption or None, fileName=filename or "file", title=filename or "file",
                                 **common)
    else:
        sub = pb.StickerMessage(**common)
    return pb.Message(**{field: sub})


def location(latitude: float, longitude: float, name: str | None, address: str | None, url: str | None,
             forwarded: bool = False) -> Any:
    """A location pin."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import LocationMessage, Message

    loc = LocationMessage(degreesLatitude=latitude, degreesLongitude=longitude, name=name or None,
                          address=address or None, URL=url or None)
    if forwarded:
        loc.contextInfo.CopyFrom(_forwarded())
    return Message(locationMessage=loc)


def contact(vcard: str, display_name: str, forwarded: bool = False) -> Any:
    """A contact card."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContactMessage, Message

    card = ContactMessage(displayName=display_name, vcard=vcard)
    if forwarded:
        card.contextInfo.CopyFrom(_forwarded())
    return Message(contactMessage=card)


def text(body: str, forwarded: bool = False) -> Any:
    """A text message (an extended text when it carries the "Forwarded" mark)."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage, Message

    if forwarded:
        return Message(extendedTextMessage=ExtendedTextMessage(text=body, contextInfo=_forwarded()))
    return Message(conversation=body)


def key(chat: str, message_id: str, from_me: bool, participant: str | None) -> Any:
    """The ``MessageKey`` of a target message (``chat`` and ``participant`` in whatsmeow's JID form)."""
    from neonize.proto.waCommon.WACommon_pb2 import MessageKey

    k = MessageKey(remoteJID=chat, fromMe=from_me, ID=message_id)
    if participant and not from_me:
        k.participant = participant
    return k


def reaction(target: Any, emoji: str) -> Any:
    """A reaction on ``target`` (a ``MessageKey``); ``emoji`` "" removes it."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message, ReactionMessage

    return Message(reactionMessage=ReactionMessage(key=target, text=emoji, senderTimestampMS=int(time.time() * 1000)))


def edit(target: Any, new_text: str) -> Any:
    """whatsmeow's ``BuildEdit``: the new text of ``target`` (a message this account sent)."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import FutureProofMessage, Message, ProtocolMessage

    proto = ProtocolMessage(key=target, type=ProtocolMessage.MESSAGE_EDIT, editedMessage=Message(conversation=new_text),
                            timestampMS=int(time.time() * 1000))
    return Message(editedMessage=FutureProofMessage(message=Message(protocolMessage=proto)))


def revoke(target: Any) -> Any:
    """whatsmeow's ``BuildRevoke``: delete ``target`` for everyone."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message, ProtocolMessage

    return Message(protocolMessage=ProtocolMessage(key=target, type=ProtocolMessage.REVOKE))


def forward(client: Any, kind: str, content: Mapping[str, Any], data: bytes | None) -> Any:
    """A copy of a sent message (outbox ``kind`` and ``content``) marked "Forwarded"; ``data``: a media file."""
    if kind == "text":
        return text(str(content["message"]), forwarded=True)
    if kind == "location":
        return location(float(content["latitude"]), float(content["longitude"]), content.get("name"),
                        content.get("address"), content.get("url"), forwarded=True)
    if kind == "vcard":
        return contact(str(content["vcard"]), str(content["displayName"]), forwarded=True)
    if kind == "media" and data is not None:
        return media(client, str(content["mediaType"]), str(content["mimetype"]), data, content.get("caption"),
                     content.get("filename"), forwarded=True)
    raise ValueError(f"a {kind} message cannot be forwarded")
