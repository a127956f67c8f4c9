"""The hub ⇄ worker message protocol: JSON lines over the worker's stdin and stdout.

Version 2. Every message is one UTF-8 JSON object on one line (``\\n``-terminated), at most
:data:`MAX_LINE_BYTES` long. Three kinds flow; the worker speaks first::

    worker → hub  {"type": "hello", "version": 1, "pid": 4242, "client": "neonize"}
    hub → worker  {"type": "command", "id": 7, "cmd": "send_text", "args": {"chat_id": "...", "text": "..."}}
    worker → hub  {"type": "reply", "id": 7, "ok": true, "result": {"message_id": "3EB0…", "timestamp": 17…}}
    worker → hub  {"type": "reply", "id": 8, "ok": false,
                   "error": {"kind": "permanent", "reason": "not_on_whatsapp", "message": "…", "maybe_sent": false}}
    worker → hub  {"type": "event", "event": "Receipt", "at": 1767225600000,
                   "data": {"message_ids": ["3EB0…"], "ack": "read", "chat_id": "…@c.us", "timestamp": …}}

* ``hello.version`` must equal :data:`VERSION`; the hub kills a worker that speaks another version.
* Commands (:data:`COMMANDS`) carry an id unique per worker; exactly one reply answers each, in
  any order. ``error.kind`` is ``transient`` | ``permanent`` | ``disconnected`` | ``state`` | ``engine``
  and maps back onto the :mod:`wahub.domain.errors` tree (:func:`error_from_wire`; ``state`` is
  :class:`~wahub.engines.base.EngineStateConflict`). ``error.maybe_sent`` is true when the
  message may have reached WhatsApp before the failure (the request was written: a timeout, a
  connection lost while waiting for the server's answer, an unknown error) — the hub must not
  send it again.
* ``send_text`` / ``send_poll`` take an optional ``message_id`` (see ``docs/whatsmeow.md``,
  "Message ids"); the reply's ``message_id`` is that id, ``wire_id`` the one whatsmeow used.
* Events are the :mod:`wahub.engines.base` dataclasses by class name, their fields as JSON
  (tuples as arrays). ``at`` is the worker's wall time (epoch ms) when it sent the event.
* The worker's stdout is reserved for the protocol: the worker moves fd 1 onto stderr before
  neonize loads (its Go core prints to fd 1) and writes protocol lines to a duplicate of the
  original stdout (:func:`claim_stdout`). Everything else a worker says goes to stderr.
* End of input on the worker's stdin means the hub is gone: the worker exits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
from typing import IO, Any

from wahub.domain.errors import (
    DisconnectedError,
    EngineError,
    PermanentSendError,
    SendError,
    TransientSendError,
    WaHubError,
)
from wahub.engines import base

VERSION = 2
MAX_LINE_BYTES = 1_048_576
COMMANDS = ("connect", "reconnect", "stop", "logout", "status", "send_text", "send_poll", "typing",
            "pairing_code", "is_on_whatsapp", "directory", "fake", "send_media", "send_location", "send_vcard",
            "send_reaction", "send_edit", "send_revoke", "send_forward", "seen", "presence", "download_media")
"""``fake`` drives the offline fake client (tests and benchmarks only); a real worker refuses it."""

EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in (
    base.QrCode, base.PairCode, base.Authenticated, base.Ready, base.Disconnected, base.ConnectFailed,
    base.LoggedOut, base.TemporaryBan, base.QrTimeout, base.InboundMessage, base.PollVote, base.Receipt,
    base.Reaction, base.MessageEdit, base.MessageRevoke)}


class ProtocolError(EngineError):
    """A line that is not a valid protocol message."""


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line (UTF-8 JSON + ``\\n``)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one protocol line. Raises :class:`ProtocolError` for anything but a JSON object with a type."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"protocol line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError(f"not a protocol message: {line[:80]!r}")
    return value


def hello(client: str) -> dict[str, Any]:
    """The worker's first message."""
    return {"type": "hello", "version": VERSION, "pid": os.getpid(), "client": client}


def command(command_id: int, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A hub → worker command."""
    return {"type": "command", "id": command_id, "cmd": cmd, "args": args or {}}


def reply_ok(command_id: int, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """A successful reply to command ``command_id``."""
    return {"type": "reply", "id": command_id, "ok": True, "result": result or {}}


def reply_error(command_id: int, exc: BaseException) -> dict[str, Any]:
    """A failed reply to command ``command_id`` carrying ``exc`` (see :func:`error_to_wire`)."""
    return {"type": "reply", "id": command_id, "ok": False, "error": error_to_wire(exc)}


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """``{"kind", "reason", "message", "maybe_sent"}`` for an exception (unknown ones are ``engine`` errors)."""
    if isinstance(exc, base.EngineStateConflict):
        kind = "state"
    elif isinstance(exc, DisconnectedError):
        kind = "disconnected"
    elif isinstance(exc, PermanentSendError):
        kind = "permanent"
    elif isinstance(exc, SendError):
        kind = "transient"
    else:
        kind = "engine"
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return {"kind": kind, "reason": str(reason), "message": str(exc) or type(exc).__name__,
            "maybe_sent": bool(getattr(exc, "maybe_sent", False))}


def error_from_wire(error: dict[str, Any]) -> WaHubError:
    """The exception a failed reply stands for."""
    kind, reason, message = error.get("kind"), str(error.get("reason", "")), str(error.get("message", ""))
    maybe_sent = bool(error.get("maybe_sent", False))
    if kind == "disconnected":
        return DisconnectedError(message, reason=reason or "disconnected", maybe_sent=maybe_sent)
    if kind == "permanent":
        return PermanentSendError(message, reason=reason or "permanent", maybe_sent=maybe_sent)
    if kind == "transient":
        return TransientSendError(message, reason=reason or "transient", maybe_sent=maybe_sent)
    if kind == "state":
        return base.EngineStateConflict(message, reason=reason or "conflict")
    return EngineError(message)


def event_to_wire(event: base.EngineEvent, at_ms: int) -> dict[str, Any]:
    """An engine event as a protocol message; ``at_ms`` is the sender's wall time."""
    return {"type": "event", "event": type(event).__name__, "at": at_ms, "data": dataclasses.asdict(event)}


def event_from_wire(message: dict[str, Any]) -> base.EngineEvent:
    """The engine event of an ``event`` message. Raises :class:`ProtocolError` for unknown events."""
    cls = EVENT_TYPES.get(str(message.get("event")))
    if cls is None:
        raise ProtocolError(f"unknown event {message.get('event')!r}")
    data = message.get("data") or {}
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    try:
        event: base.EngineEvent = cls(**kwargs)
    except TypeError as exc:
        raise ProtocolError(f"bad {cls.__name__} event: {exc}") from exc
    return event


class Writer:
    """Writes protocol lines to a binary stream; safe to call from several threads."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        """Write and flush one message (raises ``OSError`` once the hub has gone)."""
        data = encode(message)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


def claim_stdout() -> IO[bytes]:
    """Reserve the process's stdout for the protocol and point fd 1 at stderr.

    Returns a binary stream on a duplicate of the original stdout. Call it before neonize is
    imported: its Go core writes diagnostics to fd 1, which would corrupt the protocol.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)
