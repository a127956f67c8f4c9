"""Memory of idle whatsmeow workers: one, and twenty at once.

Usage: ``.venv/bin/python bench/workers.py [--count 20]``

Two kinds of worker are measured, neither of which touches the network:

* ``fake``: the worker with the offline fake client, connected (showing its QR code);
* ``neonize``: the worker with neonize's real ``NewClient`` created but never connected
  (run inside ``unshare -n`` when the machine allows it).

Memory is read from ``/proc/<pid>/status`` (VmRSS) and ``/proc/<pid>/smaps_rollup`` (Pss: shared
pages such as the 19 MB Go library split between the processes that map them; USS, the private
memory a worker alone holds = Private_Clean + Private_Dirty), once every worker has said hello and
settled for a second. ``--env 'GOGC=20 GOMEMLIMIT=16MiB'`` adds rows for the fake client under other
worker environments, with their USS as a ratio to the default's in the same run. Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wahub.engines.whatsmeow import protocol  # noqa: E402

FAKE = "wahub.engines.whatsmeow.fakeclient:FakeClient"


def kib(pid: int, path: str, key: str) -> int:
    """A ``key:  N kB`` line of a /proc file, in KiB."""
    with open(f"/proc/{pid}/{path}") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def no_network_prefix() -> list[str]:
    """``unshare -n`` when the machine allows an empty network namespace, else nothing."""
    probe = ["unshare", "-n", "true"]
    if shutil.which("unshare") and subprocess.run(probe, capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


async def spawn(session: Path, instance: str, fake: bool, extra_env: dict[str, str] | None = None
                ) -> asyncio.subprocess.Process:
    args = [sys.executable, "-m", "wahub.engines.whatsmeow.worker", "--session", str(session),
            "--instance", instance, "--log-level", "warning"]
    prefix: list[str] = []
    if fake:
        args += ["--fake-client", FAKE]
    else:
        prefix = no_network_prefix()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(extra_env or {})}
    proc = await asyncio.create_subprocess_exec(*prefix, *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stdin is not None
    hello = protocol.decode(await asyncio.wait_for(proc.stdout.readline(), 60))
    assert hello["type"] == "hello", hello
    if fake:
        proc.stdin.write(protocol.encode(protocol.command(1, "connect")))
        await proc.stdin.drain()
        while protocol.decode(await proc.stdout.readline())["type"] != "reply":
            pass
    proc.worker_pid = int(hello["pid"])  # type: ignore[attr-defined]  # unshare forks: the worker's own pid
    return proc


async def measure(count: int, fake: bool, base: Path, extra_env: dict[str, str] | None = None
                  ) -> tuple[float, float, float, float]:
    """(mean RSS MiB per worker, total RSS MiB, total PSS MiB, mean USS MiB per worker) of ``count`` idle workers."""
    procs = []
    tag = "-".join(f"{k}{v}" for k, v in (extra_env or {}).items())
    for i in range(count):  # one after another, like the hub's staggered restore
        procs.append(await spawn(base / f"{'fake' if fake else 'real'}{tag}-{i}", f"bench{i}", fake, extra_env))
    await asyncio.sleep(1.0)
    rss = [kib(p.worker_pid, "status", "VmRSS") for p in procs]  # type: ignore[attr-defined]
    pss = [kib(p.worker_pid, "smaps_rollup", "Pss") for p in procs]  # type: ignore[attr-defined]
    uss = [kib(p.worker_pid, "smaps_rollup", "Private_Clean") + kib(p.worker_pid, "smaps_rollup", "Private_Dirty")
           for p in procs]  # type: ignore[attr-defined]
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    for p in procs:
        try:
            await asyncio.wait_for(p.wait(), 10)
        except TimeoutError:
            p.kill()
            await p.wait()
    return sum(rss) / len(rss) / 1024, sum(rss) / 1024, sum(pss) / 1024, sum(uss) / len(uss) / 1024


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
                        help="a worker environment to compare with the default, e.g. 'GOGC=20 GOMEMLIMIT=16MiB' "
                             "(repeatable; each is measured for the fake client with --count workers)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fake in (True, False):
            for n in (1, args.count):
                mean, total, pss, uss = await measure(n, fake, Path(tmp))
                rows.append(("fake client, connected" if fake else "neonize client, not connected", n,
                             mean, total, pss, uss))
        for variant in args.env:
            extra = dict(pair.split("=", 1) for pair in variant.split())
            mean, total, pss, uss = await measure(args.count, True, Path(tmp), extra)
            rows.append((f"fake client, connected, {variant}", args.count, mean, total, pss, uss))
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    print()
    base_uss = rows[1][5]  # the fake client with --count workers, default environment
    print("| worker | workers | RSS per worker (MiB) | RSS total (MiB) | PSS total (MiB) | USS per worker (MiB) "
          "| USS ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, n, mean, total, pss, uss in rows:
        print(f"| {kind} | {n} | {mean:.1f} | {total:.1f} | {pss:.1f} | {uss:.1f} | {uss / base_uss:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
