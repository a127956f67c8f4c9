"""Memory and idle CPU of a hub with 1, 100 and 1,000 ready sandbox instances.

Starts the real ``wa-hub serve`` (sandbox engine, auto-linking, SQLite in a temp dir), creates N
instances over HTTP, waits until all are ready, lets the hub sit idle for ``--idle-seconds`` and
reads the server's RSS (VmRSS) and CPU time (utime + stime) from /proc. Prints a Markdown table
and the per-instance cost between the smallest and largest N.

    .venv/bin/python bench/idle_instances.py --counts 1 100 1000 --idle-seconds 30
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.server import Server  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def measure(n: int, idle_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp), env={
            "SANDBOX_AUTO_LINK_MS": "0", "LOG_LEVEL": "warning", "RESTORE_STAGGER_MS": "0"}) as hub:
        assert hub.proc is not None
        pid = hub.proc.pid
        with httpx.Client(base_url=hub.url, headers=dict(hub.client.headers), timeout=60) as c:
            for i in range(n):
                r = c.post("/instances", json={"name": f"idle-{i}"})
                r.raise_for_status()
            deadline = time.monotonic() + 300
            while True:
                states = [i["status"] for i in c.get("/instances").json()]
                if states.count("ready") == n:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {states.count('ready')} of {n} ready")
                time.sleep(0.5)
        time.sleep(2)  # let start-up work (webhook-less events, timers) finish
        rss0, cpu0 = rss_kb(pid), cpu_s(pid)
        time.sleep(idle_s)
        rss1, cpu1 = rss_kb(pid), cpu_s(pid)
        return {"n": n, "rss_mb": rss1 / 1024, "idle_cpu_pct": 100 * (cpu1 - cpu0) / idle_s,
                "rss_growth_kb": rss1 - rss0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--idle-seconds", type=float, default=30)
    args = parser.parse_args()
    rows = [measure(n, args.idle_seconds) for n in args.counts]
    print(f"| ready instances | server RSS (MB) | idle CPU over {args.idle_seconds:g}s (% of one core) |")
    print("|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['rss_mb']:.1f} | {r['idle_cpu_pct']:.2f} |")
    lo, hi = rows[0], rows[-1]
    if hi["n"] > lo["n"]:
        per = (hi["rss_mb"] - lo["rss_mb"]) * 1024 / (hi["n"] - lo["n"])
        cpu = (hi["idle_cpu_pct"] - lo["idle_cpu_pct"]) / (hi["n"] - lo["n"])
        print(f"\nper extra idle instance: {per:.1f} KB RSS, {cpu:.5f} % CPU")


if __name__ == "__main__":
    main()
