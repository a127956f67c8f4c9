"""What the worker needs from neonize and the process around it, apart from the command loop.

Logging set-up (JSON lines the hub re-emits), building the client (neonize's or the fake), and the
few neonize calls the worker makes differently from neonize's own wrappers (:func:`send_raw`),
plus reading the session directory (:func:`stored_login`). Nothing here runs at import time;
neonize is imported inside the functions, after the worker set its environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from wahub.domain import chatid
from wahub.engines.whatsmeow.template import complete_neonize

SESSION_DB = "whatsmeow.sqlite3"

log = logging.getLogger("wahub.whatsmeow.worker")


FAKE_CLIENT_ENV = "WAHUB_WHATSMEOW_FAKE_CLIENT"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the worker."""
    p = argparse.ArgumentParser(prog="python -m wahub.engines.whatsmeow.worker")
    p.add_argument("--session", required=True, help="session directory (holds the whatsmeow database)")
    p.add_argument("--instance", required=True, help="instance id (log context, neonize uuid)")
    p.add_argument("--qr-window-ms", type=int, default=170_000,
                   help="after the first QR code, report qr_timeout and exit when not linked by then")
    p.add_argument("--fake-client", default=os.environ.get(FAKE_CLIENT_ENV) or None,
                   help="module:Class replacing neonize's NewClient (tests only)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: ``{"event", "level", "logger", "detail"?, "exception"?}``.

    Worker messages are written ``"<event> key=value …"``: the first word is the event, the rest
    the detail. The hub re-emits each line through its own structured log
    (:func:`wahub.engines.whatsmeow.engine.relay_worker_log`), so the worker never breaks the JSON
    log stream.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event, _, detail = message.partition(" ")
        line: dict[str, Any] = {"event": event or "log", "level": record.levelname.lower(), "logger": record.name}
        if detail:
            line["detail"] = detail
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, instance_id: str) -> None:
    """Log JSON lines to stderr before neonize is imported; neonize's Go logs at warning unless debugging.

    neonize's warning at import that ffmpeg is missing is silenced (media conversion is not used).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(level=level.upper(), force=True, handlers=[handler])
    go_level = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("neonize", "neonize.utils.log", "whatsmeow", "Whatsmeow.Database"):
        logging.getLogger(name).setLevel(go_level)
    logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)


def load_client(session_dir: Path, instance_id: str, fake: str | None) -> tuple[Any, str]:
    """Import neonize (after the environment is set) and build the client: neonize's or the fake."""
    complete_neonize()  # also when the package came from the worker template without its Go library
    import neonize._binder as binder

    # neonize 0.5.2 forgot the errcheck of DecryptPollVote: without this every call raises TypeError.
    binder.gocode.DecryptPollVote.errcheck = binder.consume_bytes_struct
    name = str(session_dir / SESSION_DB)
    if fake:
        module_name, _, class_name = fake.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        log.warning("fake_client_in_use client=%s", fake)
        return cls(name, uuid=instance_id), f"fake:{fake}"
    from neonize.client import NewClient

    return NewClient(name, uuid=instance_id), "neonize"


def resolve(value: Any) -> Any:
    """A neonize property that may be a coroutine (``NewAClient.is_connected``) → its value."""
    if inspect.isawaitable(value):
        async def wait() -> Any:
            return await value

        return asyncio.run(wait())
    return value


def send_raw(client: Any, to: Any, message: Any) -> Any:
    """Send through neonize's Go ``SendMessage`` and return its whole answer (``SendMessageReturnFunction``).

    neonize's ``send_message`` raises on ``Error`` and drops ``SendResponse``; but whatsmeow fills
    ``SendResponse.ID`` before it writes, so on a failure after the write (a timeout) the answer
    still names the id the message went out under — the evidence a later receipt is matched to.
    The fake client offers the same call as ``send_message_raw``.
    """
    raw = getattr(client, "send_message_raw", None)
    if raw is not None:
        return raw(to, message)
    from neonize._binder import gocode
    from neonize.proto.Neonize_pb2 import SendMessageReturnFunction

    to_bytes, body = to.SerializeToString(), message.SerializeToString()
    answer = gocode.SendMessage(client.uuid, to_bytes, len(to_bytes), body, len(body))
    return SendMessageReturnFunction.FromString(answer)


def stored_login(session_dir: Path) -> bool:
    """Whether the session directory holds a linked device (whatsmeow's ``whatsmeow_device`` row, or the fake's)."""
    import sqlite3

    if (session_dir / "fake-session.json").exists():
        return True
    db = session_dir / SESSION_DB
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return bool(conn.execute("SELECT count(*) FROM whatsmeow_device").fetchone()[0])
    except sqlite3.Error:
        return False


def to_jid(chat_id: str) -> Any:
    """External chat id → neonize JID (``@c.us`` → ``@s.whatsapp.net``)."""
    from neonize.utils.jid import build_jid

    user, _, server = chatid.to_whatsmeow(chat_id).rpartition("@")
    return build_jid(user, server)
