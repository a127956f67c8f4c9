"""The value types and refusals of the engine send actions besides text and polls (re-exported by ``base``)."""

from __future__ import annotations

from dataclasses import dataclass

from wahub.domain.errors import EngineError


class EngineUnsupported(EngineError):
    """The engine cannot do this action at all (→ HTTP 501 with the message)."""


class MediaNotFound(EngineError):
    """No downloadable media is known for that message (→ HTTP 404)."""


class MediaTooLarge(EngineError):
    """The media is larger than the download cap (→ HTTP 413)."""


MEDIA_TYPES = ("image", "video", "audio", "ptt", "document", "sticker")


@dataclass(frozen=True)
class Media:
    """A file to send. ``media_type`` is one of :data:`MEDIA_TYPES`; ``data`` the whole file."""

    media_type: str
    mimetype: str
    data: bytes
    caption: str | None = None
    filename: str | None = None
    forwarded: bool = False


@dataclass(frozen=True)
class Location:
    """A location pin (degrees)."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None
    forwarded: bool = False


@dataclass(frozen=True)
class MessageRef:
    """A message acted upon: its id, whether this account sent it, and its sender in a group."""

    message_id: str
    from_me: bool
    participant: str | None = None


@dataclass(frozen=True)
class DownloadedMedia:
    """A received message's media."""

    data: bytes
    mimetype: str
    filename: str | None = None
