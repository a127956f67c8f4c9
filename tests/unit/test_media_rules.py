"""The pure media and content rules of the send actions (domain/media.py, domain/content.py)."""

from __future__ import annotations

import pytest

from wahub.domain import content, media
from wahub.domain.errors import InvalidInput
from wahub.domain.outbox import ItemKind


@pytest.mark.parametrize(("data", "mime"), [
    (b"\xff\xd8\xff\xe0rest", "image/jpeg"), (b"\x89PNG\r\n\x1a\nrest", "image/png"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"), (b"OggS\x00", "audio/ogg"), (b"%PDF-1.7", "application/pdf"),
    (b"\x00\x00\x00\x18ftypmp42", "video/mp4"), (b"\x00\x00\x00\x18ftypM4A ", "audio/mp4"),
    (b"\x00\x00\x00\x18ftyp3gp4", "video/3gpp"), (b"hello", None),
])
def test_sniff(data: bytes, mime: str | None) -> None:
    assert media.sniff(data) == mime


def test_the_file_type_decides_the_message_and_flags_must_fit() -> None:
    assert media.media_type("image/jpeg", as_voice=False, as_document=False, as_sticker=False) == "image"
    assert media.media_type("image/tiff", as_voice=False, as_document=False, as_sticker=False) == "document"
    assert media.media_type("video/mp4", as_voice=False, as_document=False, as_sticker=False) == "video"
    assert media.media_type("audio/ogg", as_voice=True, as_document=False, as_sticker=False) == "ptt"
    assert media.media_type("image/jpeg", as_voice=False, as_document=True, as_sticker=False) == "document"
    assert media.media_type("image/webp", as_voice=False, as_document=False, as_sticker=True) == "sticker"
    with pytest.raises(InvalidInput, match="asSticker needs a WebP"):
        media.media_type("image/png", as_voice=False, as_document=False, as_sticker=True)
    with pytest.raises(InvalidInput, match="exclude each other"):
        media.media_type("audio/ogg", as_voice=True, as_document=True, as_sticker=False)


def test_mime_patterns_and_the_declared_image_must_match_its_bytes() -> None:
    patterns = ["image/jpeg", "audio/*", "application/vnd.*"]
    assert media.allowed("audio/ogg", patterns) and media.allowed("application/vnd.ms-excel", patterns)
    assert not media.allowed("application/x-msdownload", patterns) and not media.allowed("image/png", patterns)
    assert media.choose_mimetype(b"\xff\xd8\xff\xe0", None, "application/pdf", "a.pdf", "f") == "image/jpeg"
    assert media.choose_mimetype(b"plain", None, None, "notes.txt", "f") == "text/plain"
    assert media.choose_mimetype(b"plain", None, None, None, "f") == "application/octet-stream"
    with pytest.raises(InvalidInput, match="f: declared image/png but the bytes look like image/jpeg"):
        media.choose_mimetype(b"\xff\xd8\xff\xe0", "image/png", None, None, "f")


def test_a_media_payload_keeps_its_size_and_a_document_gets_a_name() -> None:
    fields = content.validate(ItemKind.MEDIA, {"mediaBase64": "JVBERi0xLjQ=", "mimetype": "application/pdf"})
    assert fields == {"mediaType": "document", "mimetype": "application/pdf", "data": "JVBERi0xLjQ=", "size": 8,
                      "filename": "file.pdf"}
    with pytest.raises(InvalidInput, match="mediaCaption cannot go with ptt"):
        content.validate(ItemKind.MEDIA, {"mediaBase64": "T2dnUw==", "mimetype": "audio/ogg", "asVoice": True,
                                          "mediaCaption": "hi"})
    with pytest.raises(InvalidInput, match="mediaName must be a file name"):
        content.validate(ItemKind.MEDIA, {"mediaBase64": "T2dnUw==", "mimetype": "audio/ogg", "mediaName": "../x"})


def test_vcard_from_fields_or_text() -> None:
    built = content.validate(ItemKind.VCARD, {"vCard": {"firstName": "Mona", "lastName": "Adel",
                                                        "phoneNumber": "+20 100", "organization": "Shop; Inc"}})
    assert built["displayName"] == "Mona Adel"
    assert "ORG:Shop\\; Inc;" in built["vcard"] and "waid=20100:+20100" in built["vcard"]
    raw = "BEGIN:VCARD\nVERSION:3.0\nFN:Desk\nEND:VCARD"
    assert content.validate(ItemKind.VCARD, {"vCard": raw}) == {"vcard": raw, "displayName": "Desk"}


@pytest.mark.parametrize("emoji", ["👍", "❤️", "👍🏽", "👨‍👩‍👧", ""])
def test_a_reaction_is_one_emoji_or_empty(emoji: str) -> None:
    fields = content.validate(ItemKind.REACTION, {"messageId": "3EB0", "reaction": emoji, "fromMe": True})
    assert fields == {"messageId": "3EB0", "fromMe": True, "reaction": emoji}


@pytest.mark.parametrize("bad", ["ok", "👍 ", "a👍", "👍" * 17, 5])
def test_a_reaction_that_is_not_an_emoji_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="reaction"):
        content.validate(ItemKind.REACTION, {"messageId": "3EB0", "reaction": bad})
