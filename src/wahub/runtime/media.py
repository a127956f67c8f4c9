"""Media for ``send-media``: the bytes from ``mediaBase64`` or fetched from ``mediaUrl``, checked before enqueue.

A URL is fetched when the send is asked for, not when it goes out: a missing, refused or
oversized file is the caller's 4xx at once (naming ``mediaUrl``), and the send loop's instant
carries no network fetch. The URL passes the webhook address guard (``WEBHOOK_ALLOWED_NETWORKS``,
checked at every connection, redirects included: :class:`~wahub.runtime.urlguard.GuardedTransport`),
and the body is read in chunks up to ``MEDIA_MAX_BYTES``: a larger file is refused without being
read further. The bytes then travel in the item's payload (base64) until the item is purged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from wahub.domain import media, webhookurl
from wahub.domain.errors import InvalidInput
from wahub.runtime import urlguard

MAX_REDIRECTS = 3


class MediaSource:
    """Turns a ``send-media`` body into one with ``mediaBase64`` and ``mimetype`` (see the module docstring)."""

    def __init__(self, policy: webhookurl.Policy, *, max_bytes: int, mime_types: Sequence[str], timeout_ms: int,
                 resolver: urlguard.Resolver = urlguard.system_resolver,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.mime_types = [m.strip().lower() for m in mime_types if m.strip()]
        self.timeout_ms = timeout_ms
        self.resolver = resolver
        self.transport = transport  # tests only; the default dials through the address guard

    async def resolve(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the file as canonical ``mediaBase64`` and its checked ``mimetype``.

        Raises InvalidInput naming ``mediaUrl``, ``mediaBase64``, ``mimetype`` or ``mediaName``.
        """
        url, b64 = body.get("mediaUrl"), body.get("mediaBase64")
        if (url in (None, "")) == (b64 in (None, "")):
            raise InvalidInput("exactly one of mediaUrl and mediaBase64 is required")
        declared = body.get("mimetype")
        declared_mime = media.normalize_mimetype(declared, "mimetype") if declared not in (None, "") else None
        name = body.get("mediaName")
        if name is not None and not isinstance(name, str):
            raise InvalidInput("mediaName must be a string")
        if b64 not in (None, ""):
            data, field, served = self._decode(b64), "mediaBase64", None
        else:
            data, served, url_name = await self._fetch(url)
            field = "mediaUrl"
            name = name or url_name
        if not data:
            raise InvalidInput(f"{field}: the file is empty")
        mime = media.choose_mimetype(data, declared_mime, served, name, "mimetype" if declared_mime else field)
        if not media.allowed(mime, self.mime_types):
            raise InvalidInput(f"{field}: {mime} files are not accepted (MEDIA_MIME_TYPES={','.join(self.mime_types)})")
        out = {k: v for k, v in body.items() if k not in ("mediaUrl", "mediaBase64")}
        out.update(mediaBase64=base64.b64encode(data).decode("ascii"), mimetype=mime)
        if name:
            out["mediaName"] = name
        return out

    def _decode(self, value: object) -> bytes:
        if not isinstance(value, str):
            raise InvalidInput("mediaBase64 must be a base64 string")
        text = value.strip()
        if text.startswith("data:") and "," in text:  # a data: URL as browsers produce it
            text = text.split(",", 1)[1]
        if len(text) * 3 // 4 > self.max_bytes + 3:
            raise InvalidInput(f"mediaBase64: the file is larger than MEDIA_MAX_BYTES={self.max_bytes}")
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("mediaBase64 is not valid base64") from None
        if len(data) > self.max_bytes:
            raise InvalidInput(f"mediaBase64: the file is larger than MEDIA_MAX_BYTES={self.max_bytes}")
        return data

    def _client(self) -> httpx.AsyncClient:
        transport = self.transport or urlguard.GuardedTransport(self.policy, self.resolver)
        return httpx.AsyncClient(transport=transport, timeout=self.timeout_ms / 1000, follow_redirects=True,
                                 max_redirects=MAX_REDIRECTS, trust_env=False)

    async def _fetch(self, url: object) -> tuple[bytes, str | None, str | None]:
        """(bytes, the server's Content-Type, the file name in the URL path). Raises InvalidInput naming mediaUrl."""
        try:
            target = webhookurl.parse(url)
        except InvalidInput as exc:
            raise InvalidInput(exc.message.replace(webhookurl.FIELD, "mediaUrl")) from None
        refusal = webhookurl.refusal_by_name(target.host, self.policy)
        if refusal is not None:
            raise InvalidInput(f"mediaUrl refused: {refusal}")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_ms / 1000), self._client() as client, \
                    client.stream("GET", target.url) as response:  # the whole fetch, a slow body included
                if response.status_code != 200:
                    raise InvalidInput(f"mediaUrl answered HTTP {response.status_code}, not 200")
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > self.max_bytes:
                    raise InvalidInput(f"mediaUrl: the file has {length} bytes, more than MEDIA_MAX_BYTES="
                                       f"{self.max_bytes}")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InvalidInput(f"mediaUrl: the file is larger than MEDIA_MAX_BYTES={self.max_bytes}")
                    chunks.append(chunk)
                served = response.headers.get("content-type")
                final = str(response.url)
        except httpx.TooManyRedirects:
            raise InvalidInput(f"mediaUrl redirects more than {MAX_REDIRECTS} times") from None
        except (httpx.TimeoutException, TimeoutError):
            raise InvalidInput(f"mediaUrl was not fetched within {self.timeout_ms} ms") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise InvalidInput(f"mediaUrl could not be fetched: {exc}") from None
        mime = None
        if served:
            try:
                mime = media.normalize_mimetype(served, "mediaUrl")
            except InvalidInput:
                mime = None
        if mime in ("application/octet-stream", "binary/octet-stream"):
            mime = None
        name = unquote(PurePosixPath(urlsplit(final).path).name) or None
        return b"".join(chunks), mime, name
