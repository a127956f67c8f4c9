"""A loopback HTTP/1.1 receiver on the test's event loop that counts connections and scripts raw answers.

Unlike :mod:`tests.support.receiver` (http.server, one connection per request), this one keeps
connections alive, so tests can see how a client reuses them. Each request is answered with the
next entry of ``script`` (raw bytes, or ``None`` to close the connection without answering, or
``"hold"`` to never answer), then ``default`` once the script is used up.
"""

from __future__ import annotations

import asyncio
from typing import Any

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
HOLD = "hold"


class RawReceiver:
    """``async with RawReceiver() as rx:``; ``rx.url`` takes POSTs; ``rx.requests``: (connection no, head, body)."""

    def __init__(self, default: bytes = OK) -> None:
        self.default = default
        self.script: list[bytes | str | None] = []
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.BaseTransport] = []

    async def __aenter__(self) -> RawReceiver:
        self._server = await asyncio.get_running_loop().create_server(self._protocol, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self.drop_connections()
        self._server.close()
        await self._server.wait_closed()

    def drop_connections(self) -> None:
        """Close every open connection from the server side (idle keep-alive ones too)."""
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    def _protocol(self) -> asyncio.Protocol:
        self.connections += 1
        return _Conn(self, self.connections)


class _Conn(asyncio.Protocol):
    def __init__(self, rx: RawReceiver, number: int) -> None:
        self.rx = rx
        self.number = number
        self.buf = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.rx._transports.append(transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            self.rx.requests.append((self.number, head, body))
            answer = self.rx.script.pop(0) if self.rx.script else self.rx.default
            if answer is None:
                self.transport.close()
                return
            if answer != HOLD:
                assert isinstance(answer, bytes)
                self.transport.write(answer)
