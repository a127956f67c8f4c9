"""The worker template: imports the worker's Python side once, then forks every worker from it.

Run by the hub's :class:`~wahub.engines.whatsmeow.launcher.WorkerLauncher` as
``python -m wahub.engines.whatsmeow.template --control FD --hub-pid PID [--preload MODULE]``.

Why: about 36 MiB of an idle worker's private memory were Python modules (neonize's ``__init__``
imports its whole client: PIL, python-magic, linkpreview + requests + bs4, phonenumbers, every
protobuf module), the same in every worker. The template imports them once; a forked worker shares
those pages copy-on-write (``gc.freeze()`` before forking, so the collector does not write to every
object's header), and loads neonize's Go library itself: a Go runtime cannot be forked, so the
template never loads it. It installs the ``neonize`` package *without* running its ``__init__``
(which loads the library through ``neonize.client`` → ``neonize._binder``) and imports every other
module ``__init__`` and ``client`` import; the worker runs the package's ``__init__`` when it builds
its client (:func:`complete_neonize`).

Control channel (a ``SOCK_SEQPACKET`` socket, one JSON object per message):

* hub → template: ``{"op": "spawn", "id": n, "argv": [...], "env": {...}}`` with three file
  descriptors, the worker's stdin, stdout and stderr; ``argv`` are the worker's options;
* template → hub: ``{"op": "ready", "pid": p}`` once the imports are done;
  ``{"op": "spawned", "id": n, "pid": p}`` with the worker's pidfd (opened before the template can reap
  it, so it names that process and no other); ``{"op": "failed", "id": n, "error": "..."}``;
  ``{"op": "exited", "pid": p, "code": c}`` (``-N`` when killed by signal N, as asyncio reports it).

Lifetime: the template exits when the hub closes the channel or dies (it polls a pidfd of the hub).
Every worker watches that same pidfd on a thread and exits at once when the hub is gone (the
equivalent of ``PR_SET_PDEATHSIG``, whose parent would be the template). Workers do not depend on
the template: when it dies they run on, and the hub starts a new one for the next worker. A worker
whose environment changes a ``PYTHON*`` variable (read when an interpreter starts) is not run in
the fork: the forked process ``exec``\\ s a fresh ``python -m wahub.engines.whatsmeow.worker``.
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NoReturn

NEONIZE = "neonize"
STUB_MARK = "__wahub_template_stub__"
MAX_MESSAGE_BYTES = 1 << 20
EXIT_CHILD_SETUP_FAILED = 70
WORKER_MODULES = ("wahub.engines.whatsmeow.worker", "wahub.engines.whatsmeow.adapter",
                  "wahub.engines.whatsmeow.content", "wahub.engines.whatsmeow.outgoing",
                  "wahub.engines.whatsmeow.workeractions", "wahub.engines.whatsmeow.workerdirectory")


# -- the neonize package without its Go library -------------------------------------------------
def neonize_imports() -> list[str]:
    """Modules ``neonize/__init__.py`` and ``neonize/client.py`` import at top level, except the two that load Go."""
    spec = importlib.util.find_spec(NEONIZE)
    if spec is None or spec.origin is None:
        raise ImportError("neonize is not installed")
    root = Path(spec.origin).parent
    names: set[str] = set()
    for file in ("__init__.py", "client.py"):
        for node in ast.parse((root / file).read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                names.add(NEONIZE + ("." + node.module if node.module else "") if node.level else str(node.module))
    return sorted(names - {f"{NEONIZE}._binder", f"{NEONIZE}.client", NEONIZE})


def install_neonize_stub() -> None:
    """Put the ``neonize`` package in ``sys.modules`` without running its ``__init__`` (which loads Go)."""
    if NEONIZE in sys.modules:
        raise RuntimeError("neonize was imported before the template installed its package")
    spec = importlib.util.find_spec(NEONIZE)
    assert spec is not None
    package = importlib.util.module_from_spec(spec)
    setattr(package, STUB_MARK, True)
    sys.modules[NEONIZE] = package


def complete_neonize() -> None:
    """Import neonize: run its ``__init__`` (loading the Go library) also when the template installed the package."""
    package = sys.modules.get(NEONIZE)
    if package is None or not getattr(package, STUB_MARK, False):
        importlib.import_module(NEONIZE)
        return
    delattr(package, STUB_MARK)
    assert package.__spec__ is not None and package.__spec__.loader is not None
    package.__spec__.loader.exec_module(package)


def preload(extra: list[str]) -> None:
    """Import everything a worker imports before it loads Go (and the ``--preload`` modules, e.g. a fake client)."""
    from wahub.engines.whatsmeow.workerio import configure_logging

    configure_logging("warning", "template")  # silences neonize's ffmpeg warning at import, as in a worker
    install_neonize_stub()
    for name in [*neonize_imports(), *WORKER_MODULES, *extra]:
        importlib.import_module(name)
    if f"{NEONIZE}._binder" in sys.modules or f"{NEONIZE}.client" in sys.modules:
        raise RuntimeError("a preloaded module loaded neonize's Go library; it cannot be forked")


# -- the fork loop ------------------------------------------------------------------------------
class Template:
    """The fork loop: spawn requests in, pids and exit codes out."""

    def __init__(self, control: socket.socket, hub_fd: int) -> None:
        self.control = control
        self.hub_fd = hub_fd
        self.startup_env = dict(os.environ)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the hub, which stops the workers and us

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        """One message to the hub, with file descriptors (blocking: the hub reads at once)."""
        socket.send_fds(self.control, [json.dumps(message).encode()], fds or [])

    def run(self) -> int:
        """Serve until the hub closes the channel or dies; returns the exit code."""
        poller = select.poll()
        for fd in (self.control.fileno(), self.hub_fd, self.wake_r):
            poller.register(fd, select.POLLIN)
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            for fd, _ in poller.poll():
                if fd == self.hub_fd:
                    return 0
                if fd == self.wake_r:
                    os.read(self.wake_r, 4096)
                    self.reap()
                elif fd == self.control.fileno():
                    data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE_BYTES, 3)
                    if not data:
                        return 0
                    self.spawn(json.loads(data), fds)

    def reap(self) -> None:
        """Collect every exited worker and report its exit code."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def spawn(self, request: dict[str, Any], fds: list[int]) -> None:
        """Fork one worker; answer ``spawned`` with its pidfd, or ``failed``. Closes ``fds`` here."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            if len(fds) != 3:
                raise ValueError(f"a spawn needs 3 file descriptors, got {len(fds)}")
            pid = os.fork()
            if pid == 0:
                self.child(request, fds)
            pidfd = os.pidfd_open(pid)
        except (OSError, ValueError) as exc:  # no memory or pids left for a fork: that launch fails, we go on
            self.send({"op": "failed", "id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            for fd in fds:
                os.close(fd)
        try:
            self.send({"op": "spawned", "id": request.get("id"), "pid": pid}, [pidfd])
        finally:
            os.close(pidfd)

    def child(self, request: dict[str, Any], fds: list[int]) -> NoReturn:
        """In the forked process: become the worker (never returns)."""
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            self.control.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            env = {str(k): str(v) for k, v in dict(request["env"]).items()}
            argv = [str(a) for a in request["argv"]]
            if interpreter_settings(env) != interpreter_settings(self.startup_env):
                os.close(self.hub_fd)
                os.execve(sys.executable, [sys.executable, "-m", "wahub.engines.whatsmeow.worker", *argv], env)
            os.environ.clear()
            os.environ.update(env)
            threading.Thread(target=exit_when_gone, args=(self.hub_fd,), name="wahub-hub-watch", daemon=True).start()
            from wahub.engines.whatsmeow import worker

            sys.argv = ["wahub.engines.whatsmeow.worker", *argv]
            worker.main(argv)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(EXIT_CHILD_SETUP_FAILED)


def interpreter_settings(env: dict[str, str]) -> dict[str, str]:
    """The variables an interpreter reads when it starts (``PYTHON*``): a fork cannot change them."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def exit_when_gone(hub_fd: int) -> None:
    """Block until the hub process has exited, then end this worker at once."""
    from wahub.engines.whatsmeow.worker import EXIT_HUB_GONE

    select.select([hub_fd], [], [])
    os._exit(EXIT_HUB_GONE)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the template process."""
    parser = argparse.ArgumentParser(prog="python -m wahub.engines.whatsmeow.template")
    parser.add_argument("--control", type=int, required=True, help="file descriptor of the control socket")
    parser.add_argument("--hub-pid", type=int, required=True, help="pid of the hub (the template's parent)")
    parser.add_argument("--preload", action="append", default=[], help="another module to import once")
    args = parser.parse_args(argv)
    hub_fd = os.pidfd_open(args.hub_pid)
    if os.getppid() != args.hub_pid:  # the hub died before the pidfd was opened: it names another process
        sys.exit(0)
    control = socket.socket(fileno=args.control)
    control.setblocking(True)
    os.environ["NEONIZE_BOT_TAG"] = "off"  # as a worker sets it, before anything could load neonize's Go core
    preload(list(args.preload))
    gc.collect()
    gc.freeze()  # the forks share these objects' pages; the collector no longer writes to them
    sys.exit(Template(control, hub_fd).run())


if __name__ == "__main__":
    main()
