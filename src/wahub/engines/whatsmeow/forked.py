"""A worker forked by the template, as the engine sees it: pipes, an exit seen on a pidfd, a kill through it.

The worker is the template's child, not the hub's (:mod:`~wahub.engines.whatsmeow.launcher`), so
``waitpid`` cannot tell the hub when it ends: the pidfd the template opened for it becomes readable
when it exits, and its exit code comes from the template, which reaps it (``-N`` for signal N). When
the template is gone, the exit is still seen on the pidfd and the code is :data:`UNKNOWN_EXIT`, unless
the hub became the worker's parent (the hub is pid 1 in a container) and reaps it itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import IO, Protocol

UNKNOWN_EXIT = 255  # a forked worker's exit code after its template died (nobody could report it)


class WorkerProcess(Protocol):
    """What the engine uses of a worker process; ``asyncio.subprocess.Process`` is one."""

    @property
    def pid(self) -> int:
        """The worker's process id."""
        ...

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has exited (negative: killed by that signal), else None."""
        ...

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    async def wait(self) -> int:
        """Wait for the exit; returns the exit code."""
        ...

    def kill(self) -> None:
        """Send SIGKILL; raises ``ProcessLookupError`` once it has exited."""
        ...


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
