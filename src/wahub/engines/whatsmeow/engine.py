"""The ``whatsmeow`` engine in the hub process: spawns, talks to and supervises one worker subprocess.

Each instance's neonize client lives in its own worker process
(:mod:`wahub.engines.whatsmeow.worker`), because neonize's Go core can abort the interpreter
and is not safe for many clients in one process. This class speaks the JSON-lines protocol of
:mod:`wahub.engines.whatsmeow.protocol` over the worker's stdin/stdout and maps it onto the
:class:`~wahub.engines.base.Engine` interface:

* ``start`` launches the worker (forked from the factory's worker template, see
  :mod:`~wahub.engines.whatsmeow.launcher`), waits for its ``hello`` and asks it to connect;
* the worker's death (any exit the engine did not ask for) is ``Disconnected("worker_exit")``,
  and pending calls fail with ``DisconnectedError(reason="worker_exit")``;
* ``reconnect`` (soft restart) reconnects inside the worker, or respawns a dead one;
* ``stop`` closes the worker's stdin (it stops its client and exits), and kills it by pid after
  ``stop_timeout_s``; a hard restart is ``stop`` + a new engine's ``start``;
* ``logout`` unlinks the device when the worker runs, then deletes the session directory (also
  when no worker runs); ``discard_session`` deletes it without unlinking;
* sends go out under the caller's ``message_id`` (:func:`new_message_id`, aliased in the worker:
  :mod:`~wahub.engines.whatsmeow.msgids`); a failure after the request was written (a timeout, a
  lost connection, an unknown error, the worker dying, no answer within ``send_timeout_s``) raises
  a ``SendError`` with ``maybe_sent=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from wahub.domain.clock import Clock
from wahub.domain.errors import DisconnectedError, EngineError, SendError, TransientSendError
from wahub.engines import base
from wahub.engines.whatsmeow import msgids, protocol
from wahub.engines.whatsmeow.directory import WhatsmeowDirectory
from wahub.engines.whatsmeow.engineactions import SendActionsMixin
from wahub.engines.whatsmeow.forked import WorkerProcess
from wahub.engines.whatsmeow.launcher import WorkerLauncher
from wahub.engines.whatsmeow.workeractions import TRANSFER_DIR

log = structlog.get_logger("wahub.engines.whatsmeow")


@dataclass(frozen=True)
class WorkerOptions:
    """How workers are started. ``fake_client`` (``module:Class``) replaces neonize's client in tests."""

    python: str = sys.executable
    fake_client: str | None = None
    qr_window_ms: int = 170_000
    hello_timeout_s: float = 60.0
    command_timeout_s: float = 30.0
    send_timeout_s: float = 90.0  # above whatsmeow's own 75 s answer timeout, so its error arrives first
    stop_timeout_s: float = 5.0
    log_level: str = "info"
    env: Mapping[str, str] = field(default_factory=dict)
    template: bool = True  # fork workers from the worker template (shared imports); False spawns each anew

    def launcher(self) -> WorkerLauncher:
        """A launcher for workers with these options (the factory shares one between its engines)."""
        preload = [self.fake_client.partition(":")[0]] if self.fake_client else []
        return WorkerLauncher(self.python, use_template=self.template, preload=preload,
                              start_timeout_s=self.hello_timeout_s, stop_timeout_s=self.stop_timeout_s,
                              relay=relay_worker_log)


class WhatsmeowEngine(SendActionsMixin, base.Engine):
    """One instance's linked device, run by a worker subprocess."""

    capabilities = base.Capabilities(polls=True, typing=True, pairing_code=True, number_check=True,
                                     chosen_message_ids=True, media=True, locations=True, contacts=True,
                                     reactions=True, edits=True, revokes=True, forwards=True, seen=True, presence=True,
                                     media_download=True)

    def __init__(self, instance_id: str, sink: base.EventSink, *, session_dir: Path, clock: Clock,
                 options: WorkerOptions | None = None, launcher: WorkerLauncher | None = None) -> None:
        self.instance_id = instance_id
        self.sink = sink
        self.session_dir = session_dir
        self.clock = clock
        self.options = options or WorkerOptions()
        # Without the factory's shared launcher, each worker is spawned (a template for one worker saves nothing).
        self.launcher = launcher or dataclasses.replace(self.options, template=False).launcher()
        self.pid: int | None = None
        self.client_kind: str | None = None
        self._proc: WorkerProcess | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._expected_exit = False
        self._log_relay: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a worker process is alive."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Spawn the worker and ask it to connect; QR / ready events follow through the sink."""
        if self.running:
            return
        shutil.rmtree(self.session_dir / TRANSFER_DIR, ignore_errors=True)  # files a crash left behind
        opts = self.options
        args = ["--session", str(self.session_dir), "--instance", self.instance_id,
                "--qr-window-ms", str(opts.qr_window_ms), "--log-level", opts.log_level]
        if opts.fake_client:
            args += ["--fake-client", opts.fake_client]
        env = {**os.environ, **opts.env}
        self._expected_exit = False
        proc = await self.launcher.launch(args, env, limit=protocol.MAX_LINE_BYTES)
        self._proc, self.pid = proc, proc.pid
        self._log_relay = asyncio.ensure_future(self._relay_logs(proc))
        log.info("worker_spawned", instance_id=self.instance_id, pid=proc.pid)
        try:
            assert proc.stdout is not None
            hello = protocol.decode(await asyncio.wait_for(proc.stdout.readline(), opts.hello_timeout_s))
            if hello.get("type") != "hello" or hello.get("version") != protocol.VERSION:
                raise protocol.ProtocolError(f"worker said {hello!r}, not hello version {protocol.VERSION}")
        except (TimeoutError, protocol.ProtocolError) as exc:
            log.error("worker_start_failed", instance_id=self.instance_id, pid=proc.pid, error=str(exc))
            await self._kill(proc)
            self._proc = None
            await self.sink(base.Disconnected("worker_start_failed"))
            return
        self.client_kind = str(hello.get("client"))
        if self.client_kind != "neonize":
            log.warning("worker_client", instance_id=self.instance_id, client=self.client_kind)
        self._reader = asyncio.ensure_future(self._read(proc))
        await self._call("connect", timeout=opts.command_timeout_s)

    async def reconnect(self) -> None:
        """Soft restart: reconnect inside the worker (a dead worker is respawned)."""
        if not self.running:
            await self.stop()
            await self.start()
            return
        await self._call("reconnect", timeout=self.options.command_timeout_s)

    async def stop(self) -> None:
        """Close the worker's stdin so it exits; kill it by pid when it does not within the grace."""
        proc, reader = self._proc, self._reader
        self._expected_exit = True
        if proc is not None:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), self.options.stop_timeout_s)
            except TimeoutError:
                log.warning("worker_kill", instance_id=self.instance_id, pid=proc.pid)
                await self._kill(proc)
        if reader is not None and reader is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, self.options.stop_timeout_s)
        relay = self._log_relay
        if relay is not None and proc is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(relay, self.options.stop_timeout_s)
        self._fail_pending(DisconnectedError("the engine was stopped", reason="not_connected"))
        if self._proc is proc:
            self._proc = None

    async def logout(self) -> None:
        """Unlink the device (when the worker runs), stop the worker, delete the session directory.

        Works in every state: without a worker (restricted, logged out, error) the files go all the same.
        """
        if self.running:
            try:
                await self._call("logout", timeout=self.options.command_timeout_s)
            except Exception as exc:
                log.warning("logout_failed", instance_id=self.instance_id, error=str(exc))
        await self.discard_session()

    async def discard_session(self) -> None:
        """Stop the worker and delete the session directory without unlinking; the next start shows a QR."""
        await self.stop()
        remove_session_dir(self.session_dir)
        log.info("session_removed", instance_id=self.instance_id)

    def new_message_id(self) -> str:
        """A fresh id in whatsmeow's shape; the worker sends under it (see :mod:`~wahub.engines.whatsmeow.msgids`)."""
        return msgids.new_id()

    # -- sends and queries ------------------------------------------------------------------------
    async def send_text(self, chat_id: str, text: str, *, message_id: str | None = None) -> base.SendResult:
        return await self._send("send_text", {"chat_id": chat_id, "text": text, "message_id": message_id})

    async def send_poll(self, chat_id: str, caption: str, options: list[str], multiple: bool, *,
                        message_id: str | None = None, template: Mapping[str, Any] | None = None) -> base.SendResult:
        args = {"chat_id": chat_id, "caption": caption, "options": list(options), "multiple": multiple,
                "message_id": message_id}
        return await self._send("send_poll", args)

    async def _send(self, cmd: str, args: dict[str, Any]) -> base.SendResult:
        """A send command; no answer in time is ``maybe_sent`` (the worker may have delivered it)."""
        try:
            result = await self._call(cmd, args, timeout=self.options.send_timeout_s)
        except TimeoutError as exc:
            raise TransientSendError(f"the worker did not answer {cmd} within {self.options.send_timeout_s} s",
                                     reason="timeout", maybe_sent=True) from exc
        return base.SendResult(message_id=str(result["message_id"]), timestamp=int(result.get("timestamp", 0)),
                               extra={"wire_id": str(result.get("wire_id", ""))})

    async def send_typing(self, chat_id: str) -> None:
        await self._query("typing", {"chat_id": chat_id})

    async def request_pairing_code(self, phone: str) -> str:
        if not self.running:
            raise base.EngineStateConflict("the connection is not waiting for a login (no worker runs); "
                                           "restart the instance and ask again", reason="not_waiting_for_login")
        result = await self._query("pairing_code", {"phone": phone}, timeout=60.0)
        code = str(result["code"])
        await self.sink(base.PairCode(code))
        return code

    async def probe_ready(self) -> bool:
        if not self.running:
            return False
        try:
            result = await self._query("status", {})
        except EngineError:
            return False
        return bool(result.get("connected") and result.get("linked"))

    async def is_registered(self, chat_id: str) -> bool:
        result = await self._query("is_on_whatsapp", {"chat_id": chat_id})
        return bool(result["registered"])

    def directory(self) -> WhatsmeowDirectory:
        """Reads, contacts and groups through the worker (see :mod:`~wahub.engines.whatsmeow.directory`)."""
        return WhatsmeowDirectory(self._query)

    async def control(self, **args: Any) -> dict[str, Any]:
        """Drive the fake client (tests and benchmarks only; a real worker refuses)."""
        return await self._query("fake", args)

    # -- protocol ---------------------------------------------------------------------------------
    async def _query(self, cmd: str, args: dict[str, Any],
                     timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109  # noqa: ASYNC109
        """A non-send command: every failure is an ``EngineError``."""
        try:
            return await self._call(cmd, args, timeout=timeout or self.options.command_timeout_s)
        except DisconnectedError as exc:
            if cmd == "pairing_code":
                raise base.EngineStateConflict(str(exc), reason="not_waiting_for_login") from exc
            raise EngineError(str(exc)) from exc
        except SendError as exc:
            raise EngineError(str(exc)) from exc
        except TimeoutError as exc:
            raise EngineError(f"the worker did not answer {cmd} in time") from exc

    async def _call(self, cmd: str, args: dict[str, Any] | None = None, *,
                    timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None or proc.stdin.is_closing():
            raise DisconnectedError("the whatsmeow worker is not running", reason="not_connected")
        command_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = fut
        try:
            proc.stdin.write(protocol.encode(protocol.command(command_id, cmd, args)))
            await proc.stdin.drain()
            reply = await (asyncio.wait_for(fut, timeout) if timeout else fut)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise DisconnectedError("the whatsmeow worker is gone", reason="not_connected") from exc
        finally:
            self._pending.pop(command_id, None)
        if reply.get("ok"):
            return dict(reply.get("result") or {})
        raise protocol.error_from_wire(dict(reply.get("error") or {}))

    async def _read(self, proc: WorkerProcess) -> None:
        """Route replies to their callers and events to the sink until the worker's stdout closes."""
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                try:
                    message = protocol.decode(line)
                except protocol.ProtocolError as exc:
                    log.warning("worker_bad_line", instance_id=self.instance_id, error=str(exc))
                    continue
                if message["type"] == "reply":
                    fut = self._pending.get(int(message.get("id", 0)))
                    if fut is not None and not fut.done():
                        fut.set_result(message)
                elif message["type"] == "event":
                    await self._deliver(message)
        except (ValueError, asyncio.LimitOverrunError) as exc:  # a line over the limit: stream unusable
            log.error("worker_stream_broken", instance_id=self.instance_id, error=str(exc))
            await self._kill(proc)
        code = await proc.wait()
        # A send in flight may already have reached WhatsApp: maybe_sent makes it `uncertain`.
        self._fail_pending(DisconnectedError(f"the whatsmeow worker exited (code {code})",
                                             reason="worker_exit", maybe_sent=True))
        if self._expected_exit or self._proc is not proc:
            log.info("worker_exited", instance_id=self.instance_id, pid=proc.pid, code=code)
            return
        log.warning("worker_died", instance_id=self.instance_id, pid=proc.pid, code=code)
        self._proc = None
        await self.sink(base.Disconnected("worker_exit"))

    async def _deliver(self, message: dict[str, Any]) -> None:
        try:
            event = protocol.event_from_wire(message)
        except protocol.ProtocolError as exc:
            log.warning("worker_bad_event", instance_id=self.instance_id, error=str(exc))
            return
        if isinstance(event, base.TemporaryBan) and event.expires_at is not None:
            # The worker computed the expiry on its wall clock; carry it over to the hub's clock.
            offset = self.clock.now_ms() - int(message.get("at") or self.clock.now_ms())
            event = base.TemporaryBan(code=event.code, expires_at=event.expires_at + offset)
        if isinstance(event, base.QrTimeout):
            self._expected_exit = True  # the worker exits right after reporting it
        await self.sink(event)

    async def _relay_logs(self, proc: WorkerProcess) -> None:
        """Re-emit the worker's stderr (JSON lines) in the hub's structured log until it closes."""
        assert proc.stderr is not None
        try:
            while line := await proc.stderr.readline():
                relay_worker_log(line, self.instance_id, proc.pid)
        except (ValueError, asyncio.LimitOverrunError):  # an over-long line: drop the rest of the stream
            log.warning("worker_log_stream_broken", instance_id=self.instance_id, pid=proc.pid)

    def _fail_pending(self, exc: Exception) -> None:
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    async def _kill(self, proc: WorkerProcess) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def relay_worker_log(line: bytes, instance_id: str, pid: int) -> None:
    """One stderr line of a worker → one hub log event (``worker.<event>``) with the instance and pid.

    A line that is not the worker's JSON (a Go panic trace, Go printing to stdout before fd 1 moved)
    becomes ``worker_output`` at warning level, its text in ``line`` (cut at 2 000 characters).
    """
    text = line.decode("utf-8", "replace").rstrip()
    if not text:
        return
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        log.warning("worker_output", instance_id=instance_id, pid=pid, line=text[:2000])
        return
    level = _LEVELS.get(str(record.pop("level", "info")), 20)
    event = record.pop("event")
    fields = {k: v for k, v in record.items() if k not in ("instance_id", "pid")}
    log.log(level, f"worker.{event}", instance_id=instance_id, pid=pid, **fields)


def remove_session_dir(session_dir: Path) -> None:
    """Delete a session directory (whatsmeow's database, the fake session, the id aliases)."""
    shutil.rmtree(session_dir, ignore_errors=True)
