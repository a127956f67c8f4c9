"""The whatsmeow worker: one neonize client in its own process, driven over the JSON-lines protocol.

Run as ``python -m wahub.engines.whatsmeow.worker --session DIR --instance ID``. The hub's
:class:`~wahub.engines.whatsmeow.engine.WhatsmeowEngine` starts it; see
:mod:`wahub.engines.whatsmeow.protocol` for the messages and ``docs/whatsmeow.md`` for the why.

Order at start-up matters (neonize pitfalls, DESIGN §7): ``NEONIZE_BOT_TAG=off`` is set and
fd 1 is moved to stderr *before* neonize is imported (its Go core reads the environment once
and prints to fd 1), and logging is configured first so neonize's ``basicConfig`` is a no-op.

Threads: the main thread reads commands; one command thread runs them in order (neonize's
Go-side maps are not safe for concurrent calls); one event thread maps neonize events through
:mod:`~wahub.engines.whatsmeow.adapter` (handlers only enqueue, so Go's callback thread is never
held up, and every failure is logged instead of vanishing); ``connect`` runs on its own thread
because it blocks for the whole session.

Exit codes: 0 when the hub closed stdin, :data:`EXIT_QR_TIMEOUT` after the QR window ended
(neonize never returns from that state, so the process ends), :data:`EXIT_HUB_GONE` when the
protocol stream broke.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from wahub.domain import chatid
from wahub.domain.errors import DisconnectedError, EngineError, PermanentSendError, WaHubError
from wahub.engines import base
from wahub.engines.whatsmeow import protocol, workeractions
from wahub.engines.whatsmeow.msgids import Aliases
from wahub.engines.whatsmeow.workerio import (  # noqa: F401 - FAKE_CLIENT_ENV is part of this module's API
    FAKE_CLIENT_ENV,
    configure_logging,
    load_client,
    parse_args,
    resolve,
    send_raw,
    stored_login,
    to_jid,
)

EXIT_QR_TIMEOUT = 3
EXIT_HUB_GONE = 4
QR_WAIT_FOR_PAIRING_S = 5.0  # only while a connection without a session is still opening
STOP_GRACE_S = 3.0

log = logging.getLogger("wahub.whatsmeow.worker")


class Worker:
    """One neonize client, its event pump and its command loop."""

    def __init__(self, client: Any, out: protocol.Writer, *, instance_id: str, qr_window_ms: int,
                 client_kind: str, aliases: Aliases, session_dir: Path | None = None) -> None:
        self.client = client
        self.aliases = aliases
        self.session_dir = session_dir
        self.out = out
        self.instance_id = instance_id
        self.qr_window_s = qr_window_ms / 1000
        self.client_kind = client_kind
        self.linked = False
        self.qr_seen = threading.Event()
        self._qr_timer: threading.Timer | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._connect_thread: threading.Thread | None = None
        self._registered: set[str] = set()
        self.presence_sent = False  # the account was marked available (before the first "typing…")
        self.received_media = workeractions.MediaMemory()
        self.unread = workeractions.Unread()

    # -- output -------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        """Write one protocol message; a broken stream means the hub is gone: exit."""
        try:
            self.out.send(message)
        except (OSError, ValueError):
            os._exit(EXIT_HUB_GONE)

    def emit(self, event: base.EngineEvent) -> None:
        """Send an engine event to the hub (sent-message ids under the ids the hub chose)."""
        self.send(protocol.event_to_wire(self.aliases.translate(event), int(time.time() * 1000)))

    # -- neonize callbacks (Go's thread: enqueue only) ------------------------------------------
    def on_event(self, _client: Any, event: Any) -> None:
        """neonize event handler: queue the protobuf for the mapping thread (never blocks Go's thread)."""
        try:
            self._events.put(event)
        except Exception:  # pragma: no cover - never let an exception reach the ctypes callback
            log.exception("event_enqueue_failed")

    def on_qr(self, _client: Any, data: bytes) -> None:
        """neonize QR callback (raw ``2@...`` bytes): report it and start the QR deadline on the first one."""
        try:
            self.emit(base.QrCode(data.decode()))
            if not self.qr_seen.is_set():
                self.qr_seen.set()
                self._qr_timer = threading.Timer(self.qr_window_s, self._qr_deadline)
                self._qr_timer.daemon = True
                self._qr_timer.start()
        except Exception:
            log.exception("qr_handler_failed")

    def _qr_deadline(self) -> None:
        if self.linked:
            return
        log.info("qr_window_over seconds=%s", self.qr_window_s)
        self.emit(base.QrTimeout())
        os._exit(EXIT_QR_TIMEOUT)  # neonize's connect never returns from here (FetchMe loops)

    def register_handlers(self) -> None:
        """Subscribe to every event the adapter maps (neonize snapshots the set at connect)."""
        from neonize import events as ev

        for cls in (ev.ConnectedEv, ev.DisconnectedEv, ev.LoggedOutEv, ev.TemporaryBanEv, ev.StreamReplacedEv,
                    ev.ConnectFailureEv, ev.ClientOutdatedEv, ev.PairStatusEv, ev.MessageEv, ev.ReceiptEv):
            self.client.event(cls)(self.on_event)
        self.client.event.qr(self.on_qr)

    def event_loop(self) -> None:
        """Map queued neonize events to engine events, one at a time; log and survive failures."""
        from wahub.engines.whatsmeow import adapter

        while True:
            event = self._events.get()
            try:
                name = adapter.kind(event)
                mapped: base.EngineEvent | None
                if name == "Message":
                    mapped = self._message(event)
                elif name == "Receipt":
                    mapped = adapter.receipt(event)
                else:
                    me = getattr(self.client, "me", None)
                    mapped = adapter.connection_event(event, int(time.time() * 1000), me)
                    if isinstance(mapped, base.Ready | base.Authenticated):
                        self.linked = True
                        if self._qr_timer is not None:
                            self._qr_timer.cancel()
                    elif isinstance(mapped, base.LoggedOut):
                        self.linked = False
                if mapped is not None:
                    self.emit(mapped)
            except Exception:
                log.exception("event_handler_failed event=%s", type(event).__name__)

    def _message(self, event: Any) -> base.EngineEvent | None:
        from wahub.engines.whatsmeow import adapter

        if adapter.is_poll_update(event):
            if not self.linked:  # decrypting without a stored device panics in Go
                log.warning("poll_vote_before_login_undecrypted")
                return adapter.undecryptable_vote(event)
            try:
                vote = resolve(self.client.decrypt_poll_vote(event))
            except Exception as exc:  # the voter's choice is lost, the vote itself is not
                log.warning("poll_vote_decrypt_failed error=%s", type(exc).__name__)
                return adapter.undecryptable_vote(event)
            return adapter.poll_vote(event, vote)
        mapped = adapter.message_event(event)
        if isinstance(mapped, base.InboundMessage):
            self.unread.add(mapped)  # what send-seen marks read
            if mapped.has_media:
                self.received_media.keep(mapped.message_id, event.Message)  # what download_media fetches later
        if mapped is None:
            from wahub.engines.whatsmeow import content

            log.info("message_kind_not_mapped fields=%s", ",".join(content.present_fields(event.Message)))
        return mapped

    # -- commands -------------------------------------------------------------------------------
    def command_loop(self) -> None:
        """Run commands one after another (neonize is not safe for concurrent calls)."""
        while True:
            message = self._commands.get()
            if message is None:
                return
            cid = int(message.get("id", 0))
            try:
                result = self.run_command(str(message.get("cmd")), dict(message.get("args") or {}))
            except Exception as exc:
                if not isinstance(exc, WaHubError):
                    log.warning("command_failed cmd=%s error=%s", message.get("cmd"), exc)
                error = exc if isinstance(exc, WaHubError) else EngineError(str(exc))
                self.send(protocol.reply_error(cid, error))
            else:
                self.send(protocol.reply_ok(cid, result))

    def run_command(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        """Execute one command; raises wa-hub errors (or anything, reported as an engine error)."""
        from wahub.engines.whatsmeow import adapter

        if cmd == "connect":
            self._connect()
            return {}
        if cmd == "reconnect":
            self._disconnect()
            self._connect()
            return {}
        if cmd == "logout":
            if self.linked or resolve(getattr(self.client, "is_logged_in", False)):
                try:
                    self.client.logout()
                except Exception as exc:
                    log.warning("logout_failed error=%s", exc)
            self.linked = False
            self._disconnect()
            return {}
        if cmd == "status":
            return {"connected": bool(resolve(self.client.is_connected)), "linked": self.linked}
        if cmd in ("send_text", "send_poll"):
            try:
                return self._send(cmd, args)
            except WaHubError:
                raise
            except Exception as exc:
                raise adapter.send_error(exc) from exc
        if cmd == "typing":
            self._require_linked()
            workeractions.typing(self, str(args["chat_id"]))
            return {}
        if cmd == "pairing_code":
            return {"code": self._pairing_code(str(args["phone"]))}
        if cmd == "is_on_whatsapp":
            self._require_linked()
            return {"registered": self.registered_user(str(args["chat_id"]))}
        if cmd in workeractions.COMMANDS:
            return workeractions.run(self, cmd, args)
        if cmd == "directory":  # reads, contacts and groups (workerdirectory)
            from wahub.engines.whatsmeow import workerdirectory

            self._require_linked()
            answer = workerdirectory.run(self.client, str(args["action"]), dict(args.get("args") or {}))
            found = answer.get("value") if args["action"] == "get-number-id" else None
            if isinstance(found, dict) and found.get("jid"):  # the hub asked before a send: not again in it
                self._registered.add(f"{chatid.phone_number(str(found['jid']))}@c.us")
            return answer
        if cmd == "fake":
            control = getattr(self.client, "fake_control", None)
            if control is None:
                raise EngineError("the fake command needs the fake client")
            return dict(control(args))
        raise EngineError(f"unknown command {cmd!r}")

    def _connect(self) -> None:
        if self._connect_thread is not None and self._connect_thread.is_alive():
            return

        def run() -> None:
            from wahub.engines.whatsmeow import adapter

            try:
                self.client.connect()
            except Exception as exc:  # whatsmeow could not reach WhatsApp (DNS, TLS, refused, timeout)
                failure = adapter.connect_failed(exc)
                log.warning("connect_failed reason=%s error=%s", failure.reason, exc)
                self.emit(failure)

        self._connect_thread = threading.Thread(target=run, name="neonize-connect", daemon=True)
        self._connect_thread.start()

    def _disconnect(self) -> None:
        thread = self._connect_thread
        self.client.stop()
        if thread is not None:
            thread.join(timeout=10)
            if thread.is_alive():
                raise EngineError("the previous connection did not stop; a hard restart is needed")
        self._connect_thread = None

    def require_linked(self) -> None:
        """Raise ``DisconnectedError(not_connected)`` unless logged in."""
        self._require_linked()

    def _require_linked(self) -> None:
        if not self.linked:
            raise DisconnectedError("the worker is not logged in", reason="not_connected")

    def _send(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send under the hub's ``message_id`` (aliased, see :mod:`~wahub.engines.whatsmeow.msgids`).

        Failures before the Go call are never ``maybe_sent``; failures of the call are classified
        with ``written=True`` (a timeout or a lost connection may follow a delivery).
        """
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
        from neonize.utils.enum import VoteType

        self._require_linked()
        chat = str(args["chat_id"])
        if chat.endswith("@c.us") and not self.registered_user(chat):
            raise PermanentSendError(f"{chat} is not on WhatsApp", reason="not_on_whatsapp")
        if cmd == "send_text":
            message = Message(conversation=str(args["text"]))  # verbatim: never neonize's str path
        else:
            vote_type = VoteType.MULTIPLE if args.get("multiple") else VoteType.SINGLE
            message = self.client.build_poll_vote_creation(str(args["caption"]), list(args["options"]),
                                                           vote_type)
        return self.deliver(chat, message, str(args.get("message_id") or ""))

    def deliver(self, chat: str, message: Any, chosen: str) -> dict[str, Any]:
        """Send a built ``Message`` to ``chat``; the reply's fields (``message_id`` = ``chosen`` when given)."""
        from wahub.engines.whatsmeow import adapter

        to = to_jid(chat)
        try:
            answer = send_raw(self.client, to, message)
        except Exception as exc:
            raise adapter.send_error(exc, written=True) from exc
        wire_id = str(answer.SendResponse.ID) if answer.HasField("SendResponse") else ""
        if chosen and wire_id:
            self.aliases.add(chosen, wire_id)
        if answer.Error:
            raise adapter.send_error(str(answer.Error), written=True)
        return {"message_id": chosen or wire_id, "wire_id": wire_id,
                "timestamp": int(answer.SendResponse.Timestamp) * 1000}

    def registered_user(self, chat: str) -> bool:
        """``is_on_whatsapp`` for a person, cached for the worker's life once positive."""
        digits = chatid.phone_number(chat)
        if digits is None or chat in self._registered:
            return True
        answers = resolve(self.client.is_on_whatsapp("+" + digits))
        registered = any(bool(a.IsIn) for a in answers)
        if registered:
            self._registered.add(chat)
        return registered

    def _pairing_code(self, phone: str) -> str:
        """A pairing code; needs the open pre-login websocket (the one that shows QR codes).

        Answers at once with :class:`~wahub.engines.base.EngineStateConflict` when no login is
        pending (linked, not connecting); waits at most :data:`QR_WAIT_FOR_PAIRING_S` while a
        connection is still opening.
        """
        from neonize.utils.enum import ClientName

        if self.linked:
            raise base.EngineStateConflict("instance is already linked", reason="already_linked")
        if not self.qr_seen.is_set() and self.session_dir is not None and stored_login(self.session_dir):
            raise base.EngineStateConflict(
                "a stored session is connecting, not waiting for a login; to pair anew, discard it (hard "
                "restart of a stale login, or logout) and ask again", reason="not_waiting_for_login")
        connecting = self._connect_thread is not None and self._connect_thread.is_alive()
        if not self.qr_seen.is_set() and (not connecting or not self.qr_seen.wait(QR_WAIT_FOR_PAIRING_S)):
            raise base.EngineStateConflict(
                "the connection is not waiting for a login (no QR code is shown); restart the instance "
                "(hard restart to discard a stale session) and ask again", reason="not_waiting_for_login")
        return str(resolve(self.client.PairPhone(phone.lstrip("+"), True, ClientName.LINUX)))

    # -- main loop ------------------------------------------------------------------------------
    def run(self, stdin: IO[bytes]) -> int:
        """Read commands until the hub closes stdin; returns the exit code."""
        threading.Thread(target=self.event_loop, name="wahub-events", daemon=True).start()
        commands = threading.Thread(target=self.command_loop, name="wahub-commands", daemon=True)
        commands.start()
        self.send(protocol.hello(self.client_kind))
        for line in stdin:
            if not line.strip():
                continue
            try:
                message = protocol.decode(line)
            except protocol.ProtocolError as exc:
                log.warning("bad_protocol_line error=%s", exc)
                continue
            if message["type"] == "command":
                self._commands.put(message)
        log.info("hub_closed_stdin")
        self._commands.put(None)
        commands.join(timeout=STOP_GRACE_S)
        stopper = threading.Thread(target=self._quiet_stop, daemon=True)
        stopper.start()
        stopper.join(timeout=STOP_GRACE_S)
        return 0

    def _quiet_stop(self) -> None:
        try:
            self.client.stop()
        except Exception as exc:
            log.warning("stop_failed error=%s", exc)


def main(argv: list[str] | None = None) -> None:
    """Entry point; never returns (``os._exit`` so neonize's non-daemon Go thread cannot hold the process)."""
    args = parse_args(argv)
    os.environ["NEONIZE_BOT_TAG"] = "off"  # read by the Go core when it loads: before importing neonize
    out = protocol.claim_stdout()
    configure_logging(args.log_level, args.instance)
    session_dir = Path(args.session).resolve()
    session_dir.mkdir(parents=True, exist_ok=True)
    client, kind = load_client(session_dir, args.instance, args.fake_client)
    worker = Worker(client, protocol.Writer(out), instance_id=args.instance, qr_window_ms=args.qr_window_ms,
                    client_kind=kind, aliases=Aliases(session_dir), session_dir=session_dir)
    worker.register_handlers()
    code = worker.run(sys.stdin.buffer)
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
