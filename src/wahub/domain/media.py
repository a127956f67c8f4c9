"""Media rules for sends: which WhatsApp media type a file goes out as, MIME checks, sniffing, vCards.

Pure: the bytes come from :mod:`wahub.runtime.media` (a URL fetched through the address guard, or
base64 from the request); what is allowed comes from the settings (``MEDIA_MIME_TYPES``,
``MEDIA_MAX_BYTES``) as arguments. Every refusal is :class:`InvalidInput` naming the field.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence

from wahub.domain.errors import InvalidInput

# Leading bytes of the formats WhatsApp shows inline; a declared type is checked against them.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"OggS", 0, "audio/ogg"),
    (b"%PDF-", 0, "application/pdf"),
    (b"ID3", 0, "audio/mpeg"),
    (b"#!AMR", 0, "audio/amr"),
)
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
STRICT_FAMILIES = ("image/",)  # a declared image type must match its bytes (a renamed file renders as garbage)


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes announce (images, ogg, pdf, mp3, amr, mp4 family), None when unknown."""
    for magic, offset, mime in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            if mime == "image/webp" and data[:4] != b"RIFF":
                continue
            return mime
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand.startswith(b"3gp"):
            return "video/3gpp"
        return "video/mp4"
    return None


def normalize_mimetype(value: object, field: str) -> str:
    """A lower-case ``type/subtype`` without parameters. Raises InvalidInput naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a MIME type string such as image/jpeg")
    mime = value.split(";", 1)[0].strip().lower()
    if not _MIME.match(mime):
        raise InvalidInput(f"{field} is not a MIME type (type/subtype): {value[:80]!r}")
    return mime


def guess_from_name(filename: str | None) -> str | None:
    """The MIME type a file name's extension suggests (None when it suggests none)."""
    if not filename:
        return None
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed


def choose_mimetype(data: bytes, declared: str | None, served: str | None, filename: str | None,
                    field: str) -> str:
    """The file's MIME type: the declared one, else the sniffed one, else the server's, else the name's.

    A declared or served image type must agree with the bytes (``STRICT_FAMILIES``); otherwise
    InvalidInput names ``field``. Unknown content is ``application/octet-stream`` (a document).
    """
    sniffed = sniff(data)
    chosen = declared or sniffed or served or guess_from_name(filename) or "application/octet-stream"
    if chosen.startswith(STRICT_FAMILIES) and sniffed != chosen:
        said = f"the bytes look like {sniffed}" if sniffed else "the bytes are not a known image format"
        raise InvalidInput(f"{field}: declared {chosen} but {said}")
    return chosen


def allowed(mime: str, patterns: Sequence[str]) -> bool:
    """Whether ``mime`` matches one of ``patterns`` (``image/png``, ``audio/*``, ``application/vnd.*``, ``*``)."""
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern in ("*", "*/*", mime) or (pattern.endswith("*") and mime.startswith(pattern[:-1])):
            return True
    return False


def media_type(mime: str, *, as_voice: bool, as_document: bool, as_sticker: bool) -> str:
    """The WhatsApp message a file goes out as: image | video | audio | ptt | document | sticker.

    ``asDocument`` wins; ``asVoice`` needs audio (a voice note is ``audio/ogg; codecs=opus`` on
    phones); ``asSticker`` needs a WebP image. Raises InvalidInput naming the flag when it does not fit.
    """
    if sum((as_voice, as_document, as_sticker)) > 1:
        raise InvalidInput("asVoice, asDocument and asSticker exclude each other: set at most one")
    if as_document:
        return "document"
    if as_sticker:
        if mime != "image/webp":
            raise InvalidInput(f"asSticker needs a WebP image (image/webp), not {mime}")
        return "sticker"
    if as_voice:
        if not mime.startswith("audio/"):
            raise InvalidInput(f"asVoice needs an audio file, not {mime}")
        return "ptt"
    family = mime.split("/", 1)[0]
    if family == "image" and mime in ("image/jpeg", "image/png", "image/webp", "image/gif"):
        return "image"
    if family == "video" and mime in ("video/mp4", "video/3gpp"):
        return "video"
    if family == "audio":
        return "audio"
    return "document"


def default_filename(mime: str, mtype: str) -> str:
    """A file name for a document sent without one (``file.pdf``, ``file.bin``)."""
    ext = mimetypes.guess_extension(mime, strict=False) or ".bin"
    return ("file" if mtype == "document" else mtype) + ext


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def build_vcard(name: str, phone: str | None, organization: str | None, email: str | None) -> str:
    """A vCard 3.0 for one contact; ``phone`` digits get WhatsApp's ``waid`` so the card offers "Message"."""
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{_escape(name)}", f"N:{_escape(name)};;;;"]
    if organization:
        lines.append(f"ORG:{_escape(organization)};")
    if phone:
        digits = re.sub(r"\D", "", phone)
        lines.append(f"TEL;type=CELL;type=VOICE;waid={digits}:+{digits}")
    if email:
        lines.append(f"EMAIL:{_escape(email)}")
    lines.append("END:VCARD")
    return "\n".join(lines)
