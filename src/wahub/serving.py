"""What ``wa-hub serve`` checks and holds before anything else starts, and the HTTP parser limits.

Order (each step fails with one line that says what is wrong and how to fix it, no traceback):

1. the data directory exists (created if missing) and is writable — probed by writing a file, so a
   read-only mount or a directory owned by another user is caught before the store or an engine
   touches it;
2. an exclusive lock on ``<DATA_DIR>/wa-hub.lock`` (``flock``), so two hubs never share one data
   directory (whatsmeow session files, the SQLite file). The kernel drops the lock when the process
   dies, even on SIGKILL, so a crash never leaves a stale lock behind;
3. the listening socket is bound before the hub is built: a second hub on a busy port stops here,
   before any engine worker starts on the live session directory;
4. a SQLite database file that is missing while a previous run left traces (session files, the
   sandbox's linked sessions, or the run marker ``<DATA_DIR>/wa-hub.run``) is refused instead of
   silently starting empty: every instance and its history would be gone.

Header limits: requests whose head (request line + headers) exceeds :data:`MAX_HEADER_BYTES` or that
carry more than :data:`MAX_HEADER_COUNT` headers are answered ``431`` and the connection is closed,
before authentication and before any of it reaches the app.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO, Any

#: Largest request head accepted, in bytes (nginx's default header buffers hold 32 KiB too).
MAX_HEADER_BYTES = 32 * 1024
#: Most header lines accepted in one request.
MAX_HEADER_COUNT = 100
LOCK_NAME = "wa-hub.lock"
RUN_MARKER = "wa-hub.run"  # written once a database exists: a later start without it is refused


class StartupError(Exception):
    """A condition that stops ``serve`` before it starts; ``str()`` is the one line to print."""


def prepare_data_dir(path: Path) -> None:
    """Create ``path`` if needed and prove it writable. Raises StartupError."""
    hint = (f"make it writable by this user (uid {os.getuid()}), e.g. `chown -R {os.getuid()} {path}`, "
            "or choose another with DATA_DIR / --data-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StartupError(f"data directory {path} exists but is not a directory: choose another with "
                           "DATA_DIR / --data-dir") from None
    except OSError as exc:
        raise StartupError(f"cannot create the data directory {path} ({_reason(exc)}): {hint}") from None
    probe = path / f".wa-hub-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"the data directory {path} is not writable ({_reason(exc)}): {hint}") from None


def check_database(data_dir: Path, database_url: str) -> None:
    """Refuse a missing SQLite file where a previous run left traces; mark the run otherwise.

    Raises StartupError (one line). PostgreSQL is not checked here (its server answers for itself).
    """
    prefix = "sqlite+aiosqlite:///"
    if not database_url.startswith(prefix) or database_url.endswith(":memory:"):
        return
    db = Path(database_url[len(prefix):])
    marker = data_dir / RUN_MARKER
    if db.exists():
        with contextlib.suppress(OSError):
            marker.touch(exist_ok=True)
        return
    sessions = data_dir / "sessions"
    traces = [p for p in (marker, data_dir / "sandbox" / "sessions.json") if p.exists()]
    if sessions.is_dir() and any(sessions.iterdir()):
        traces.append(sessions)
    if traces:
        raise StartupError(f"the database {db} is missing but a previous run left {traces[0]}: restore the "
                           f"database from a backup, or remove {traces[0]} to start empty on purpose")
    with contextlib.suppress(OSError):  # a first start: the database is created right after this
        marker.touch(exist_ok=True)


def lock_data_dir(path: Path) -> IO[str]:
    """Take the exclusive lock on the data directory; keep the returned file open while serving.

    Raises StartupError when another process holds it (naming that process's pid when it wrote one).
    """
    lock_path = path / LOCK_NAME
    try:
        fh = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the life of the process
    except OSError as exc:
        raise StartupError(f"cannot open {lock_path} ({_reason(exc)}): make the data directory writable") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip()
        fh.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise StartupError(f"another wa-hub{who} is already using the data directory {path}: stop it, or give "
                           "this one its own DATA_DIR / --data-dir") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``. Raises StartupError when the port is taken or not allowed."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}: {exc.strerror}; set HOST / --host to an address of "
                           "this machine (127.0.0.1, 0.0.0.0)") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use (another wa-hub?): stop that process "
                               "or choose another port with PORT / --port") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"not allowed to listen on port {port}: use a port above 1023 (PORT / --port) "
                               "behind a reverse proxy") from None
        raise StartupError(f"cannot listen on {host}:{port} ({_reason(exc)})") from None
    sock.set_inheritable(True)
    return sock


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def capped_http_protocol() -> type[Any]:
    """uvicorn's httptools protocol with :data:`MAX_HEADER_BYTES` / :data:`MAX_HEADER_COUNT` (431)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CappedHttpToolsProtocol(HttpToolsProtocol):
        """Counts the bytes that arrive while a request head is incomplete, and the header lines."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._head_count = 0
            self._head_size = 0
            self._in_head = True
            self._too_large = False

        def data_received(self, data: bytes) -> None:
            if self._too_large:
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > MAX_HEADER_BYTES and not self._too_large:
                self._refuse()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_count += 1
            self._head_size += len(name) + len(value) + 4
            if self._head_count > MAX_HEADER_COUNT or self._head_size > MAX_HEADER_BYTES:
                self._too_large = True
                raise ValueError("request header fields too large")  # the parser stops; see send_400_response
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes, self._head_count, self._head_size = True, 0, 0, 0

        def send_400_response(self, msg: str) -> None:
            if self._too_large:
                self._refuse()
            else:
                super().send_400_response(msg)

        def _refuse(self) -> None:
            self._too_large = True
            body = b"request header fields too large"
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    return CappedHttpToolsProtocol
