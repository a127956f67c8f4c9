"""The webhook dispatcher's HTTP client: HTTP/1.1 POSTs over kept-alive connections, every connection checked.

A general client (httpx) spends most of a webhook delivery's CPU on machinery a webhook POST does not
need (redirect and auth flows, cookies, cancellation shields of its async backend); this one does
one thing: send a POST with a small body and read the status line, headers and body of the answer.
The body is read only to keep the connection reusable and is otherwise ignored.

* **Keep-alive per receiver:** idle connections are kept per origin (scheme, host, port) for
  ``keepalive_s`` and reused; a request on a reused connection that the receiver had closed meanwhile
  (no byte of an answer came back) is sent once more on a new connection, as a browser does. The
  event keeps its ``webhook-id``, so a receiver that did see the first copy can drop the second.
* **Address guard:** every new connection resolves the name itself, refuses it when any address is
  refused by the policy (:func:`wahub.runtime.urlguard.resolve_checked`), and dials the address that
  was checked. No proxy from the environment, no redirects (a 3xx is an answer like any other).
* **Timeouts per phase** (``timeout_s`` each): connecting (TLS handshake included), writing the
  request, and waiting for the whole answer.
* Errors are httpx's exception classes (``ConnectError``, ``ConnectTimeout``, ``WriteTimeout``,
  ``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``), so the dispatcher reads failures the same
  way from this client and from an injected :class:`httpx.AsyncClient` (:class:`HttpxPoster`).
* Credentials in the URL (``https://user:pass@host/...``) are sent as HTTP Basic authorization, as
  httpx does.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import quote, unquote, urlsplit

import httpx

from wahub.domain import webhookurl
from wahub.runtime import urlguard

MAX_HEAD_BYTES = 64 * 1024  # status line + headers of an answer
MAX_BODY_BYTES = 1024 * 1024  # a longer answer body is not read: the connection is closed instead


@dataclass(frozen=True)
class Answer:
    """A receiver's answer: status code and the ``Retry-After`` header (None when absent)."""

    status_code: int
    retry_after: str | None


class Poster(Protocol):
    """Sends one webhook POST. Raises httpx.TimeoutException subclasses or httpx.HTTPError."""

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Answer:
        """POST ``body`` to ``url`` with ``headers``; each phase bounded by ``timeout_s``."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class HttpxPoster:
    """A :class:`Poster` over an :class:`httpx.AsyncClient` (tests inject one with a mock transport)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Answer:
        """POST through the httpx client."""
        resp = await self.client.post(url, content=body, headers=headers, timeout=timeout_s)
        return Answer(resp.status_code, resp.headers.get("retry-after"))

    async def aclose(self) -> None:
        """Close the httpx client."""
        await self.client.aclose()


@dataclass(frozen=True)
class _Target:
    origin: tuple[str, str, int]  # scheme, host, port
    head: bytes  # request line + fixed headers (host, authorization from the URL)


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: collects the answer to the request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def more(self, deadline: float) -> None:
        """Wait for more bytes (or the end of the connection) until ``deadline`` (loop time)."""
        if self.closed:
            raise httpx.RemoteProtocolError("Server disconnected without sending a complete response.")
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("no complete answer in time"))


class HookClient:
    """The dispatcher's :class:`Poster`: kept-alive HTTP/1.1 connections, guarded by ``policy``."""

    def __init__(self, policy: webhookurl.Policy, resolver: urlguard.Resolver = urlguard.system_resolver, *,
                 keepalive_s: float = 5.0, max_idle_per_origin: int = 16) -> None:
        self.policy = policy
        self.resolver = resolver
        self.keepalive_s = keepalive_s
        self.max_idle_per_origin = max_idle_per_origin
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._swept = time.monotonic()

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Answer:
        """POST ``body`` to ``url``; raises httpx's exceptions (see the module docstring)."""
        target = self._target(url)
        request = self._request(target, body, headers)
        conn = self._reuse(target.origin)
        if conn is not None:
            try:
                return await self._exchange(conn, target.origin, request, timeout_s)
            except _Stale:
                pass  # the receiver had closed the idle connection: once more on a new one
        conn = await self._connect(target.origin, timeout_s)
        try:
            return await self._exchange(conn, target.origin, request, timeout_s)
        except _Stale:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None

    async def aclose(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # -- request ---------------------------------------------------------------------------------
    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is not None:
            return target
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"not an http(s) URL: {scheme or '(none)'}")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        host_header = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            host_header += f":{parts.port}"
        lines = [f"POST {path} HTTP/1.1", f"host: {host_header}"]
        if parts.username is not None or parts.password is not None:
            creds = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
            lines.append("authorization: Basic " + base64.b64encode(creds).decode("ascii"))
        target = _Target((scheme, host, port), ("\r\n".join(lines) + "\r\n").encode("latin-1"))
        if len(self._targets) > 10_000:
            self._targets.clear()
        self._targets[url] = target
        return target

    @staticmethod
    def _request(target: _Target, body: bytes, headers: dict[str, str]) -> bytes:
        has_auth = b"\r\nauthorization:" in target.head
        out = [target.head]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise httpx.LocalProtocolError(f"header {name!r} holds a line break")
            if has_auth and name.lower() == "authorization":
                continue  # credentials in the URL win, as with httpx
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        out.append(f"content-length: {len(body)}\r\n\r\n".encode("ascii"))
        out.append(body)
        return b"".join(out)

    # -- connections -----------------------------------------------------------------------------
    def _reuse(self, origin: tuple[str, str, int]) -> _Conn | None:
        now = time.monotonic()
        if now - self._swept > self.keepalive_s:
            self._sweep(now)
        conns = self._idle.get(origin)
        while conns:
            conn = conns.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_s and not conn.buf:
                return conn
            conn.close()
        return None

    def _sweep(self, now: float) -> None:
        self._swept = now
        for origin in list(self._idle):
            keep = []
            for conn in self._idle[origin]:
                if conn.closed or now - conn.idle_since >= self.keepalive_s:
                    conn.close()
                else:
                    keep.append(conn)
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]

    def _release(self, origin: tuple[str, str, int], conn: _Conn) -> None:
        conns = self._idle.setdefault(origin, [])
        if conn.closed or len(conns) >= self.max_idle_per_origin:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        conns.append(conn)

    async def _connect(self, origin: tuple[str, str, int], timeout_s: float) -> _Conn:
        scheme, host, port = origin
        try:
            addresses = await urlguard.resolve_checked(host, port, self.policy, self.resolver)
        except urlguard.Refused as exc:
            raise httpx.ConnectError(f"refused by the webhook address policy: {exc}") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from None
        loop = asyncio.get_running_loop()
        tls = self._tls() if scheme == "https" else None
        last: Exception | None = None
        for address in addresses:
            try:
                _, conn = await asyncio.wait_for(loop.create_connection(
                    _Conn, address, port, ssl=tls, server_hostname=host if tls else None), timeout_s)
                return conn
            except TimeoutError:
                last = httpx.ConnectTimeout(f"no connection to {host}:{port} within {timeout_s:g} s")
            except (OSError, ssl.SSLError) as exc:
                last = httpx.ConnectError(str(exc) or exc.__class__.__name__)
        assert last is not None
        raise last

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:  # the same verification as before: httpx's context (certifi's CA bundle)
            self._ssl = httpx.create_ssl_context(trust_env=False)
        return self._ssl

    async def _exchange(self, conn: _Conn, origin: tuple[str, str, int], request: bytes,
                        timeout_s: float) -> Answer:
        """Send ``request`` and read the answer; raises _Stale when the connection died before any answer."""
        ok = False
        try:
            assert conn.transport is not None
            conn.buf.clear()
            conn.transport.write(request)
            loop = asyncio.get_running_loop()
            if conn.drained is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(conn.drained), timeout_s)
                except TimeoutError:
                    raise httpx.WriteTimeout(f"request not written within {timeout_s:g} s") from None
            answer, reusable = await _read_answer(conn, loop.time() + timeout_s)
            ok = reusable
            return answer
        finally:
            if ok:
                self._release(origin, conn)
            else:
                conn.close()


class _Stale(Exception):
    """The connection ended before any byte of an answer."""


async def _read_answer(conn: _Conn, deadline: float) -> tuple[Answer, bool]:
    """Parse one answer from ``conn`` (skipping 1xx); returns it and whether the connection may be reused."""
    while True:
        end = conn.buf.find(b"\r\n\r\n")
        while end < 0:
            if len(conn.buf) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("answer head too long")
            if conn.closed and not conn.buf:
                raise _Stale
            await conn.more(deadline)
            end = conn.buf.find(b"\r\n\r\n")
        head = bytes(conn.buf[:end]).decode("latin-1")
        del conn.buf[:end + 4]
        lines = head.split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
            raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}")
        status = int(status_line[1])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise httpx.RemoteProtocolError("malformed header line")
            key = name.strip().lower()
            fields[key] = f"{fields[key]}, {value.strip()}" if key in fields else value.strip()
        if 100 <= status < 200:
            continue  # an interim answer: the final one follows
        keep = status_line[0] == "HTTP/1.1" and "close" not in fields.get("connection", "").lower()
        answer = Answer(status, fields.get("retry-after"))
        if status in (204, 304):
            return answer, keep
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return answer, keep and await _skip_chunked(conn, deadline)
        length = fields.get("content-length")
        if length is None:
            return answer, False  # the body runs to the end of the connection: not read, not reused
        if not length.isdigit():
            raise httpx.RemoteProtocolError("malformed content-length")
        size = int(length)
        if size > MAX_BODY_BYTES:
            return answer, False
        while len(conn.buf) < size:
            await conn.more(deadline)
        del conn.buf[:size]
        return answer, keep and not conn.buf


async def _skip_chunked(conn: _Conn, deadline: float) -> bool:
    """Read past a chunked body (and its trailers); False when it is too long to read."""
    total = 0
    while True:
        end = conn.buf.find(b"\r\n")
        while end < 0:
            await conn.more(deadline)
            end = conn.buf.find(b"\r\n")
        size_text = bytes(conn.buf[:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise httpx.RemoteProtocolError("malformed chunk size") from None
        del conn.buf[:end + 2]
        if size == 0:
            while True:  # trailers, up to the empty line
                end = conn.buf.find(b"\r\n")
                while end < 0:
                    await conn.more(deadline)
                    end = conn.buf.find(b"\r\n")
                del conn.buf[:end + 2]
                if end == 0:
                    return not conn.buf
        total += size
        if total > MAX_BODY_BYTES:
            return False
        while len(conn.buf) < size + 2:
            await conn.more(deadline)
        del conn.buf[:size + 2]
