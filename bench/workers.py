"""Memory of idle whatsmeow workers, spawned (a fresh interpreter each) and forked from the worker template.

Usage: ``.venv/bin/python bench/workers.py [--count 20] [--env 'GOGC=20 GOMEMLIMIT=16MiB']``

Workers are started by the product's own :class:`~wahub.engines.whatsmeow.launcher.WorkerLauncher`,
one after another like the hub's staggered restore: ``spawned`` (``use_template=False``, how every
worker started before the template) and ``forked`` (the default: forks of the template, which
imported the worker's Python side once). Two kinds of worker, neither of which touches the network:

* ``fake``: the worker with the offline fake client, connected (showing its QR code);
* ``neonize``: the worker with neonize's real ``NewClient`` created but never connected.

The whole benchmark re-runs itself inside an empty network namespace (``unshare -n``) when the
machine allows it. Memory is read from ``/proc/<pid>/status`` (VmRSS) and ``/proc/<pid>/smaps_rollup``
(Pss: shared pages split between the processes that map them; USS, the private memory a worker alone
holds = Private_Clean + Private_Dirty), once every worker has said hello and settled for a second.
"PSS total" includes the template's own PSS in the forked rows. USS ratios are to the spawned fake
workers (``--count`` of them) measured in the same run; the 1-minute load average is read before
each row; "start" is the median time from launch to the worker's ``hello`` (and, for the fake client,
the reply to ``connect``), the template's own start included in the first forked worker's. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wahub.engines.whatsmeow import protocol  # noqa: E402
from wahub.engines.whatsmeow.forked import WorkerProcess  # noqa: E402
from wahub.engines.whatsmeow.launcher import WorkerLauncher  # noqa: E402

FAKE = "wahub.engines.whatsmeow.fakeclient:FakeClient"
NO_NET_ENV = "WAHUB_BENCH_NO_NET"


@dataclass
class Row:
    kind: str
    count: int
    load1: float
    rss: float  # mean per worker, MiB
    pss_total: float  # MiB, the template's included
    uss: float  # mean per worker, MiB
    start_ms: float  # median, launch to hello (+ the connect reply for the fake client)
    template_uss: float | None = None


def kib(pid: int, path: str, key: str) -> int:
    """A ``key:  N kB`` line of a /proc file, in KiB."""
    with open(f"/proc/{pid}/{path}") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def uss_kib(pid: int) -> int:
    return kib(pid, "smaps_rollup", "Private_Clean") + kib(pid, "smaps_rollup", "Private_Dirty")


def reexec_without_network() -> None:
    """Run this benchmark again inside ``unshare -n`` when the machine allows it (nothing can reach WhatsApp)."""
    if os.environ.get(NO_NET_ENV) or not shutil.which("unshare"):
        return
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return
    env = {**os.environ, NO_NET_ENV: "1"}
    os.execvpe("unshare", ["unshare", "-n", sys.executable, *sys.argv], env)


async def start(launcher: WorkerLauncher, session: Path, instance: str, fake: bool,
                extra_env: dict[str, str]) -> WorkerProcess:
    args = ["--session", str(session), "--instance", instance, "--log-level", "warning"]
    if fake:
        args += ["--fake-client", FAKE]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **extra_env}
    proc = await launcher.launch(args, env, limit=protocol.MAX_LINE_BYTES)
    assert proc.stdout is not None and proc.stdin is not None
    hello = protocol.decode(await asyncio.wait_for(proc.stdout.readline(), 60))
    assert hello["type"] == "hello", hello
    if fake:
        proc.stdin.write(protocol.encode(protocol.command(1, "connect")))
        await proc.stdin.drain()
        while protocol.decode(await proc.stdout.readline())["type"] != "reply":
            pass
    return proc


async def measure(count: int, fake: bool, forked: bool, base: Path, extra_env: dict[str, str] | None = None) -> Row:
    """One row: ``count`` idle workers started one after another, measured together."""
    launcher = WorkerLauncher(sys.executable, use_template=forked, preload=["wahub.engines.whatsmeow.fakeclient"])
    load1 = os.getloadavg()[0]
    procs = []
    tag = f"{'fake' if fake else 'real'}-{'fork' if forked else 'spawn'}-{count}-{len(extra_env or {})}"
    starts = []
    for i in range(count):
        began = time.monotonic()
        procs.append(await start(launcher, base / f"{tag}-{i}", f"bench{i}", fake, extra_env or {}))
        starts.append((time.monotonic() - began) * 1000)
    await asyncio.sleep(1.0)
    pids = [p.pid for p in procs]
    template = launcher.template_pid
    if forked:
        assert template is not None, "the template did not start"
        assert all(parent_of(pid) == template for pid in pids)
    rss = [kib(pid, "status", "VmRSS") for pid in pids]
    pss = [kib(pid, "smaps_rollup", "Pss") for pid in pids]
    uss = [uss_kib(pid) for pid in pids]
    template_pss = kib(template, "smaps_rollup", "Pss") if template else 0
    template_uss = uss_kib(template) / 1024 if template else None
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    for p in procs:
        try:
            await asyncio.wait_for(p.wait(), 10)
        except TimeoutError:
            p.kill()
            await p.wait()
    await launcher.close()
    kind = "fake client, connected" if fake else "neonize client, not connected"
    kind += ", forked" if forked else ", spawned"
    if extra_env:
        kind += ", " + " ".join(f"{k}={v}" for k, v in extra_env.items())
    return Row(kind, count, load1, sum(rss) / len(rss) / 1024, (sum(pss) + template_pss) / 1024,
               sum(uss) / len(uss) / 1024, statistics.median(starts), template_uss)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--env", action="append", default=[],
                        help="a worker environment to compare, e.g. 'GOGC=20 GOMEMLIMIT=16MiB' (repeatable; "
                             "each is measured for forked fake workers, --count of them)")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for fake in (True, False):
            for forked in (False, True):
                for n in ((1, args.count) if fake else (args.count,)):
                    rows.append(await measure(n, fake, forked, Path(tmp)))
        for variant in args.env:
            extra = dict(pair.split("=", 1) for pair in variant.split())
            rows.append(await measure(args.count, True, True, Path(tmp), extra))
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}, network namespace: "
          f"{'empty' if os.environ.get(NO_NET_ENV) else 'the host'}")
    print()
    base_uss = next(r.uss for r in rows if r.count == args.count and r.kind == "fake client, connected, spawned")
    print("| worker | workers | load1 | RSS per worker (MiB) | PSS total (MiB) | USS per worker (MiB) | USS ratio "
          "| template USS (MiB) | start, median (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        template = f"{r.template_uss:.1f}" if r.template_uss is not None else "—"
        print(f"| {r.kind} | {r.count} | {r.load1:.1f} | {r.rss:.1f} | {r.pss_total:.1f} | {r.uss:.1f} "
              f"| {r.uss / base_uss:.2f} | {template} | {r.start_ms:.0f} |")


if __name__ == "__main__":
    reexec_without_network()
    asyncio.run(main())
