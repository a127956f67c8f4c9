"""Workers forked from the worker template: shared memory, and the engine's start/stop/crash semantics kept.

Every test runs real processes (the template, forked workers with the fake client) and observes
them through ``/proc`` and the engine's own events: who the worker's parent is, whether a process
still runs, whether the Go library is mapped, how much of a worker's memory is its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.engine_events import Recorder
from tests.support.polling import wait_until
from wahub.engines import base
from wahub.engines.whatsmeow import protocol
from wahub.engines.whatsmeow.engine import WhatsmeowEngine, WorkerOptions
from wahub.engines.whatsmeow.factory import WhatsmeowFactory
from wahub.engines.whatsmeow.launcher import WorkerLauncher
from wahub.runtime.clock import SystemClock

FAKE = "wahub.engines.whatsmeow.fakeclient:FakeClient"
CUSTOMER = "201000000001@c.us"
GO_LIBRARY = "neonize-linux"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow,
              pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the template needs pidfds (Linux)")]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def runs(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def cmdline(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


def maps_go(pid: int) -> bool:
    return GO_LIBRARY in Path(f"/proc/{pid}/maps").read_text()


def kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


@pytest.fixture
async def fac(tmp_path: Path) -> AsyncIterator[WhatsmeowFactory]:
    opts = WorkerOptions(fake_client=FAKE, log_level="warning", stop_timeout_s=1.0)
    factory = WhatsmeowFactory(tmp_path / "sessions", clock=SystemClock(), options=opts)
    try:
        yield factory
    finally:
        await factory.close()


async def linked(fac: WhatsmeowFactory, name: str) -> tuple[WhatsmeowEngine, Recorder]:
    rec = Recorder()
    engine = fac.create(name, rec)
    await engine.start()
    await rec.wait_for(base.QrCode)
    await engine.control(action="scan", phone="201000000099", push_name="Shop")
    await rec.wait_for(base.Ready)
    return engine, rec


async def test_workers_are_forks_of_a_template_that_never_loads_go_and_share_its_pages(fac: WhatsmeowFactory) -> None:
    engines = [(await linked(fac, name))[0] for name in ("one", "two")]
    template = fac.launcher.template_pid
    assert template is not None and not maps_go(template)  # a Go runtime cannot be forked
    for engine in engines:
        assert engine.pid is not None
        assert parent_of(engine.pid) == template and maps_go(engine.pid)
        private = kib(engine.pid, "Private_Clean") + kib(engine.pid, "Private_Dirty")
        # A spawned worker holds ~60 % of its RSS alone; a fork shares the template's imports (~25 %).
        assert private < 0.45 * kib(engine.pid, "Rss"), (private, kib(engine.pid, "Rss"))
    assert (await engines[0].send_text(CUSTOMER, "hello")).message_id


async def test_a_dead_template_leaves_its_workers_running_and_the_next_start_makes_a_new_one(
        fac: WhatsmeowFactory) -> None:
    engine, rec = await linked(fac, "shop")
    first = fac.launcher.template_pid
    assert first is not None and engine.pid is not None
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not runs(first), timeout=20)  # blocking: the hub has not read the closed channel yet
    other, _ = await linked(fac, "other")  # its fork finds the template dead: a new one, not a spawn
    second = fac.launcher.template_pid
    assert second not in (None, first) and other.pid is not None and parent_of(other.pid) == second
    assert (await engine.send_text(CUSTOMER, "still here")).message_id  # the running worker did not notice
    os.kill(engine.pid, signal.SIGKILL)  # nobody reports its exit code any more: the pidfd still tells
    assert (await rec.wait_for(base.Disconnected)).reason == "worker_exit"
    assert not engine.running


async def test_a_hung_worker_is_killed_when_it_does_not_stop(fac: WhatsmeowFactory) -> None:
    engine, rec = await linked(fac, "shop")
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # it cannot read its closed stdin
    await engine.stop()
    assert not engine.running and not runs(pid)
    assert not rec.of(base.Disconnected)  # asked to stop: not a crash


def test_the_template_and_its_workers_end_when_the_hub_process_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from wahub.engines.whatsmeow.engine import WorkerOptions
        from wahub.engines.whatsmeow.factory import WhatsmeowFactory
        from wahub.runtime.clock import SystemClock

        async def main():
            fac = WhatsmeowFactory(Path({str(tmp_path)!r}), clock=SystemClock(),
                                   options=WorkerOptions(fake_client={FAKE!r}, log_level="warning"))
            async def sink(event):
                pass
            engines = [fac.create(name, sink) for name in ("a", "b")]
            for engine in engines:
                await engine.start()
            print("PIDS", fac.launcher.template_pid, *(e.pid for e in engines), flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
    """)
    hub = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert hub.stdout is not None
    try:
        line = b""
        while not line.startswith(b"PIDS "):  # the hub's own log lines come first
            line = hub.stdout.readline()
            assert line, "the hub exited"
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) == 3 and all(runs(pid) for pid in pids)
        assert all(parent_of(pid) == pids[0] for pid in pids[1:])
    finally:
        hub.kill()
        hub.wait()
        hub.stdout.close()
    wait_until(lambda: not any(runs(pid) for pid in pids), timeout=20)


async def hello(proc: object) -> dict[str, object]:
    stdout = getattr(proc, "stdout")  # noqa: B009 - WorkerProcess
    return protocol.decode(await asyncio.wait_for(stdout.readline(), 60))


def worker_args(session: Path) -> list[str]:
    return ["--session", str(session), "--instance", "shop", "--log-level", "warning", "--fake-client", FAKE]


async def test_without_a_template_workers_are_spawned_as_before(tmp_path: Path) -> None:
    launcher = WorkerLauncher(sys.executable, preload=["wahub.no_such_module"], start_timeout_s=60)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = await launcher.launch(worker_args(tmp_path), env, limit=protocol.MAX_LINE_BYTES)
    try:
        assert (await hello(proc))["type"] == "hello"
        assert launcher.template_pid is None and parent_of(proc.pid) == os.getpid()
    finally:
        proc.kill()
        await proc.wait()
        await launcher.close()


async def test_a_changed_interpreter_setting_gets_a_fresh_interpreter(tmp_path: Path) -> None:
    """``PYTHON*`` variables are read when an interpreter starts: a fork cannot honour a new value."""
    launcher = WorkerLauncher(sys.executable, preload=[FAKE.partition(":")[0]])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [await launcher.launch(worker_args(tmp_path / "a"), env, limit=protocol.MAX_LINE_BYTES),
             await launcher.launch(worker_args(tmp_path / "b"), {**env, "PYTHONHASHSEED": "7"},
                                   limit=protocol.MAX_LINE_BYTES)]
    try:
        for proc in procs:
            assert (await hello(proc))["type"] == "hello" and parent_of(proc.pid) == launcher.template_pid
        cmdlines = [cmdline(p.pid) for p in procs]
        assert b"wahub.engines.whatsmeow.template" in cmdlines[0]
        assert b"wahub.engines.whatsmeow.worker" in cmdlines[1]
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 30)
        await launcher.close()


async def test_a_forked_worker_builds_neonizes_real_client(tmp_path: Path) -> None:
    """The fork runs neonize's ``__init__`` itself (loading Go) and creates ``NewClient``; nothing connects."""
    launcher = WorkerLauncher(sys.executable)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--session", str(tmp_path), "--instance", "real", "--log-level", "warning"]
    proc = await launcher.launch(args, env, limit=protocol.MAX_LINE_BYTES)
    try:
        said = await hello(proc)
        assert (said["type"], said["client"]) == ("hello", "neonize")
        assert parent_of(proc.pid) == launcher.template_pid and maps_go(proc.pid)
        assert launcher.template_pid is not None and not maps_go(launcher.template_pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await launcher.close()


def test_the_template_imports_what_neonize_imports_except_the_go_loading_modules() -> None:
    from wahub.engines.whatsmeow.template import neonize_imports

    names = neonize_imports()
    assert {"PIL", "magic", "linkpreview", "neonize.events", "neonize.proto.Neonize_pb2"} <= set(names)
    assert not {"neonize", "neonize._binder", "neonize.client"} & set(names)
