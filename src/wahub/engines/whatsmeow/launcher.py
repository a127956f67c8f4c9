"""Starting whatsmeow workers: forked from the worker template, or spawned as fresh interpreters.

One :class:`WorkerLauncher` per factory. With the template (the default, Linux with pidfds) the
first launch starts ``python -m wahub.engines.whatsmeow.template`` (:mod:`~wahub.engines.whatsmeow.template`),
which imports the worker's Python side once; every worker is then a fork of it that shares those
pages and loads neonize's Go library itself. A forked worker is the template's child, not the hub's:

* its stdin, stdout and stderr are pipes the hub made and handed over (``SCM_RIGHTS``), so the
  engine speaks to it exactly as to a spawned one (:class:`WorkerProcess`);
* its exit is seen on a pidfd the template opened before it could reap the process (a pid that was
  reused cannot be mistaken for it), its exit code comes from the template (``-N`` for signal N);
  ``kill`` signals through the pidfd;
* when the template dies the workers run on; their later exits are still seen on their pidfds (the
  code is then :data:`UNKNOWN_EXIT`, unless the hub became their parent and reaps them itself), and
  the next launch starts a new template;
* when the template cannot start (no pidfds, it crashed while importing, it did not answer within
  the hello timeout) the launch spawns the worker as before, and the template is tried again after
  :data:`TEMPLATE_RETRY_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Protocol

import structlog

log = structlog.get_logger("wahub.engines.whatsmeow")

TEMPLATE_MODULE = "wahub.engines.whatsmeow.template"
WORKER_MODULE = "wahub.engines.whatsmeow.worker"
UNKNOWN_EXIT = 255  # a forked worker's exit code after its template died (nobody could report it)
TEMPLATE_RETRY_S = 60.0  # after a template failed to start, workers are spawned this long before it is tried again
REPLY_BYTES = 1 << 16  # the template answers with small JSON objects

LogRelay = Callable[[bytes, str, int], None]


class WorkerProcess(Protocol):
    """What the engine uses of a worker process; ``asyncio.subprocess.Process`` is one."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    async def wait(self) -> int: ...

    def kill(self) -> None: ...


class TemplateError(Exception):
    """The template could not fork a worker (it is gone, or the fork failed)."""


class ForkedWorker:
    """A worker forked by the template (see the module docstring for how its exit is seen)."""

    def __init__(self, pid: int, pidfd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._pid = pid
        self._pidfd = pidfd
        self._loop = loop
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._exited = False
        self._code: int | None = None
        self._template_gone = False
        self._done: asyncio.Future[int] = loop.create_future()
        loop.add_reader(pidfd, self._on_exit)

    @property
    def pid(self) -> int:
        """The worker's pid."""
        return self._pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; then its exit code (``-N`` when killed by signal N)."""
        return self._done.result() if self._done.done() else None

    async def attach(self, stdin_fd: int, stdout_fd: int, stderr_fd: int, limit: int) -> None:
        """Wrap the hub's ends of the worker's three pipes in asyncio streams (takes the descriptors over)."""
        stdout = os.fdopen(stdout_fd, "rb", buffering=0)  # owned by the file objects from here on
        stderr = os.fdopen(stderr_fd, "rb", buffering=0)
        stdin = os.fdopen(stdin_fd, "wb", buffering=0)
        try:
            self.stdout = await _read_pipe(self._loop, stdout, limit)
            self.stderr = await _read_pipe(self._loop, stderr, limit)
            transport, protocol = await self._loop.connect_write_pipe(
                lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), stdin)
            self.stdin = asyncio.StreamWriter(transport, protocol, None, self._loop)
        except BaseException:
            for pipe in (stdout, stderr, stdin):
                pipe.close()
            raise

    async def wait(self) -> int:
        """Wait until the worker has exited; its exit code."""
        return await asyncio.shield(self._done)

    def kill(self) -> None:
        """SIGKILL through the pidfd; ``ProcessLookupError`` once it has exited."""
        if self._done.done():
            raise ProcessLookupError(self._pid)
        signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        self._exited = True
        self._settle()

    def reaped(self, code: int) -> None:
        """The template reaped the worker: its exit code."""
        self._code, self._exited = code, True
        self._settle()

    def orphaned(self) -> None:
        """The template is gone: nobody will report the exit code."""
        self._template_gone = True
        self._settle()

    def _settle(self) -> None:
        if self._done.done():
            return
        if self._code is None:
            if not (self._exited and self._template_gone):
                return
            self._code = _reap_own(self._pidfd)
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._done.set_result(self._code)


def _reap_own(pidfd: int) -> int:
    """The exit code of an exited process when it became this process's child (e.g. the hub is pid 1)."""
    try:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except OSError:
        return UNKNOWN_EXIT
    if info is None:
        return UNKNOWN_EXIT
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


async def _read_pipe(loop: asyncio.AbstractEventLoop, pipe: IO[bytes], limit: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


class Template:
    """The hub's side of one template process: its control socket, pending forks and forked workers."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.sock = sock
        self.loop = loop
        self.alive = True
        self.ready: asyncio.Future[None] = loop.create_future()
        self._forks: dict[int, asyncio.Future[ForkedWorker]] = {}
        self._workers: dict[int, ForkedWorker] = {}
        self._ids = itertools.count(1)
        self._closing = False
        self.relay: asyncio.Task[None] | None = None  # the task re-emitting its stderr
        loop.add_reader(sock.fileno(), self._on_message)

    async def fork(self, argv: Sequence[str], env: Mapping[str, str], limit: int, timeout_s: float) -> ForkedWorker:
        """A new worker with ``argv`` (the worker's options) and ``env``; raises :class:`TemplateError`."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        ours, theirs = [stdin_w, stdout_r, stderr_r], [stdin_r, stdout_w, stderr_w]
        fork_id = next(self._ids)
        fut: asyncio.Future[ForkedWorker] = self.loop.create_future()
        self._forks[fork_id] = fut
        try:
            try:
                await self._send({"op": "spawn", "id": fork_id, "argv": list(argv), "env": dict(env)}, theirs)
            finally:
                for fd in theirs:
                    os.close(fd)
            worker = await asyncio.wait_for(fut, timeout_s)
        except BaseException:
            self._forks.pop(fork_id, None)
            for fd in ours:
                os.close(fd)
            raise
        await worker.attach(ours[0], ours[1], ours[2], limit)
        return worker

    async def _send(self, message: dict[str, Any], fds: list[int]) -> None:
        if not self.alive:
            raise TemplateError("the worker template is gone")
        data = json.dumps(message).encode()
        while True:
            try:
                socket.send_fds(self.sock, [data], fds)
                return
            except BlockingIOError:
                writable: asyncio.Future[None] = self.loop.create_future()
                self.loop.add_writer(self.sock.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    self.loop.remove_writer(self.sock.fileno())
            except OSError as exc:
                self._gone(str(exc))
                raise TemplateError(f"the worker template is gone ({exc})") from exc

    def _on_message(self) -> None:
        while self.alive:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, REPLY_BYTES, 1, socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            except OSError as exc:
                self._gone(str(exc))
                return
            if not data:
                self._gone("its control channel closed")
                return
            try:
                self._handle(json.loads(data), fds)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("worker_template_bad_message", error=str(exc))
                for fd in fds:
                    os.close(fd)

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        fut = self._forks.pop(int(message.get("id") or 0), None)
        if op == "spawned" and fds:
            pid = int(message["pid"])
            worker = ForkedWorker(pid, fds.pop(), self.loop)  # registered now: its exit may be the next message
            self._workers[pid] = worker
            if fut is not None and not fut.done():
                fut.set_result(worker)
            else:  # the launch gave up waiting: its pipes are closed, the worker exits on its own
                log.info("worker_fork_abandoned", pid=pid)
        elif op in ("failed", "spawned") and fut is not None and not fut.done():  # a spawn without its pidfd
            fut.set_exception(TemplateError(str(message.get("error") or "the template sent no pidfd")))
        elif op == "ready":
            if not self.ready.done():
                self.ready.set_result(None)
        elif op == "exited":
            reaped = self._workers.pop(int(message["pid"]), None)
            if reaped is not None:
                reaped.reaped(int(message["code"]))
        for fd in fds:
            os.close(fd)

    def _gone(self, reason: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        error = TemplateError(f"the worker template is gone: {reason}")
        for fut in self._forks.values():
            if not fut.done():
                fut.set_exception(error)
        self._forks.clear()
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: whoever waits sees it through its own await
        for worker in self._workers.values():
            worker.orphaned()
        self._workers.clear()
        if not self._closing:
            log.warning("worker_template_gone", pid=self.proc.pid, reason=reason)

    async def close(self, timeout_s: float) -> None:
        """Close the control channel (the template exits); kill it when it does not within ``timeout_s``."""
        self._closing = True
        self._gone("closed by the hub")
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self.relay is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.relay, timeout_s)


class WorkerLauncher:
    """Launches workers for one factory: forked from a shared template, or spawned (``use_template=False``)."""

    def __init__(self, python: str, *, use_template: bool = True, preload: Sequence[str] = (),
                 start_timeout_s: float = 60.0, stop_timeout_s: float = 5.0, relay: LogRelay | None = None) -> None:
        self.python = python
        self.use_template = use_template and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")
        self.preload = tuple(preload)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.relay = relay
        self._template: Template | None = None
        self._starting: asyncio.Task[Template] | None = None
        self._retry_at = 0.0

    @property
    def template_pid(self) -> int | None:
        """The pid of the running template, if any."""
        t = self._template
        return t.proc.pid if t is not None and t.alive else None

    async def launch(self, argv: Sequence[str], env: Mapping[str, str], *, limit: int) -> WorkerProcess:
        """A running worker with ``argv`` (its options) and ``env``; stdin, stdout and stderr are pipes."""
        for _ in range(2):  # a template found dead by this fork is replaced once
            if not self.use_template or time.monotonic() < self._retry_at:
                break
            try:
                template = await self._running_template(env)
            except (TemplateError, OSError, TimeoutError) as exc:
                log.warning("worker_template_unavailable", error=str(exc) or type(exc).__name__)
                break
            try:
                return await template.fork(argv, env, limit, self.start_timeout_s)
            except (TemplateError, OSError, TimeoutError) as exc:
                log.warning("worker_fork_failed", template_pid=template.proc.pid, error=str(exc) or type(exc).__name__)
                if template.alive:  # it is there but could not fork (no memory, no pids): spawn this one
                    break
        return await asyncio.create_subprocess_exec(
            self.python, "-m", WORKER_MODULE, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(env), limit=limit)

    async def _running_template(self, env: Mapping[str, str]) -> Template:
        loop = asyncio.get_running_loop()
        current = self._template
        if current is not None and current.alive and current.loop is loop:
            return current
        if self._starting is None or self._starting.get_loop() is not loop:
            self._starting = loop.create_task(self._start(env))
        starting = self._starting
        try:
            return await asyncio.shield(starting)
        except (TemplateError, OSError, TimeoutError):
            self._retry_at = time.monotonic() + TEMPLATE_RETRY_S
            raise
        finally:
            if self._starting is starting and starting.done():
                self._starting = None

    async def _start(self, env: Mapping[str, str]) -> Template:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            args = [self.python, "-m", TEMPLATE_MODULE, "--control", str(theirs.fileno()),
                    "--hub-pid", str(os.getpid())]
            for module in self.preload:
                args += ["--preload", module]
            try:
                proc = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE, env=dict(env), pass_fds=[theirs.fileno()])
            except BaseException:
                ours.close()
                raise
        ours.setblocking(False)
        template = Template(proc, ours, loop)
        template.relay = loop.create_task(self._relay(proc))
        try:
            await asyncio.wait_for(asyncio.shield(template.ready), self.start_timeout_s)
        except BaseException:
            await template.close(self.stop_timeout_s)
            raise
        previous, self._template = self._template, template
        if previous is not None and previous.alive:  # an older event loop's template: nothing reaches it any more
            await previous.close(self.stop_timeout_s)
        log.info("worker_template_ready", pid=proc.pid)
        return template

    async def _relay(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError):
            while line := await proc.stderr.readline():
                if self.relay is not None:
                    self.relay(line, "worker-template", proc.pid)

    async def close(self) -> None:
        """Stop the template (the factory stopped the workers first; any still running keep running)."""
        template, self._template = self._template, None
        if template is not None:
            await template.close(self.stop_timeout_s)
