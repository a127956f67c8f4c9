"""Starting whatsmeow workers: forked from the worker template, or spawned as fresh interpreters.

One :class:`WorkerLauncher` per factory. With the template (the default, Linux with pidfds) the
first launch starts ``python -m wahub.engines.whatsmeow.template`` (:mod:`~wahub.engines.whatsmeow.template`),
which imports the worker's Python side once; every worker is then a fork of it that shares those
pages and loads neonize's Go library itself. A forked worker is the template's child, not the hub's:

* its stdin, stdout and stderr are pipes the hub made and handed over (``SCM_RIGHTS``), so the
  engine speaks to it exactly as to a spawned one (:class:`~wahub.engines.whatsmeow.forked.WorkerProcess`);
* its exit is seen on a pidfd the template opened before it could reap the process (a pid that was
  reused cannot be mistaken for it), its exit code comes from the template (``-N`` for signal N);
  ``kill`` signals through the pidfd;
* when the template dies the workers run on; their later exits are still seen on their pidfds (the
  code is then :data:`~wahub.engines.whatsmeow.forked.UNKNOWN_EXIT`, unless the hub became their parent), and
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
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from wahub.engines.whatsmeow.forked import ForkedWorker, WorkerProcess

log = structlog.get_logger("wahub.engines.whatsmeow")

TEMPLATE_MODULE = "wahub.engines.whatsmeow.template"
WORKER_MODULE = "wahub.engines.whatsmeow.worker"
TEMPLATE_RETRY_S = 60.0  # after a template failed to start, workers are spawned this long before it is tried again
REPLY_BYTES = 1 << 16  # the template answers with small JSON objects

LogRelay = Callable[[bytes, str, int], None]


class TemplateError(Exception):
    """The template could not fork a worker (it is gone, or the fork failed)."""


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

    def abandon(self) -> None:
        """Close the control channel without waiting: the template exits on its own."""
        self._closing = True
        self._gone("closed by the hub")

    async def close(self, timeout_s: float) -> None:
        """Close the control channel (the template exits); kill it when it does not within ``timeout_s``."""
        self.abandon()
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
        if previous is not None:  # an older event loop's: closing its channel ends it (its loop may be closed)
            previous.abandon()
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
