"""A real loopback webhook receiver (threaded HTTP server) that records every request.

Behaviour is scriptable per request: ``receiver.script`` is a list of responses consumed in
order (status code, optional delay in seconds, optional headers); when it is empty the
receiver answers ``default_status``. ``port`` lets a test bring a receiver back on the address
of one that was down (connection refused in between).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Reply:
    """How to answer one request."""

    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """Start with ``with Receiver() as r:``; ``r.url`` is where to point webhooks."""

    def __init__(self, default_status: int = 200, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.default_status = default_status
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._cond:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(Received(self.path, headers, body, time.time()))
                    reply = receiver.script.pop(0) if receiver.script else Reply(receiver.default_status)
                    receiver._cond.notify_all()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[Received]:
        """The requests received so far (a copy, safe to read from another thread)."""
        with self._lock:
            return list(self.requests)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed bodies received so far (optionally only one event name)."""
        with self._lock:
            bodies = [r.json for r in self.requests]
        return [b for b in bodies if name is None or b.get("event") == name]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[Received]:
        """Block until ``predicate(requests)`` is true; returns the requests. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [r.body[:120] for r in self.requests]
                    raise TimeoutError(f"receiver: condition not met; got {got}")
                self._cond.wait(remaining)
            return list(self.requests)
