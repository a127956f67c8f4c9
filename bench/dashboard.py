"""Response times of the dashboard's instances list and of ``/metrics`` with a fleet of N instances.

Starts the real ``wa-hub serve`` (sandbox engine, auto-linking, SQLite in a temp dir), creates N
instances over HTTP (every tenth one with a few sent messages, so the aggregate reads see rows),
waits until all are ready, signs in to the dashboard and times each URL ``--repeat`` times
one request after another (what a polling browser tab does). Prints a Markdown table of the
median and 95th percentile in ms.

    .venv/bin/python bench/dashboard.py --instances 1000 --repeat 30

``--pythonpath DIR`` runs the server from another source tree (e.g. ``git archive <commit> src``
unpacked in DIR) to compare with an older version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.server import API_KEY, Server  # noqa: E402

URLS = [
    ("list page", "/dashboard"),
    ("list poll (partial)", "/dashboard/partials/instances"),
    ("list page 11", "/dashboard?page=11"),
    ("search by name", "/dashboard?q=fleet-99"),
    ("filter by state", "/dashboard?state=ready"),
    ("/metrics", "/metrics"),
]


def wait_ready(c: httpx.Client, n: int) -> None:
    deadline = time.monotonic() + 600
    while True:
        states = [i["status"] for i in c.get("/instances").json()]
        if states.count("ready") == n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {states.count('ready')} of {n} ready")
        time.sleep(0.5)


def timed(c: httpx.Client, path: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        r = c.get(path)
        out.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {r.status_code}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--pythonpath", help="run the server from this source directory instead")
    args = ap.parse_args()
    env = {"SANDBOX_AUTO_LINK_MS": "0", "LOG_LEVEL": "warning", "RESTORE_STAGGER_MS": "0", "SEND_INTERVAL_MS": "0"}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp), env=env) as hub:
        headers = {"authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=hub.url, headers=headers, timeout=120) as c:
            started = time.monotonic()
            for i in range(args.instances):
                c.post("/instances", json={"name": f"fleet-{i}"}).raise_for_status()
            wait_ready(c, args.instances)
            for i in range(0, args.instances, 10):
                for k in range(3):
                    c.post(f"/instances/fleet-{i}/client/action/send-message",
                           json={"chatId": f"2010000{k:05d}", "message": f"order {k}"}).raise_for_status()
            print(f"{args.instances} instances ready and loaded in {time.monotonic() - started:.0f} s",
                  file=sys.stderr)
            time.sleep(3)  # let the sends settle
            r = c.post("/dashboard/login", data={"api_key": API_KEY}, follow_redirects=False)
            assert r.status_code == 303, r.text
            rows = []
            for label, path in URLS:
                ms = sorted(timed(c, path, args.repeat))
                p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
                rows.append((label, path, statistics.median(ms), p95))
    print(f"| {args.instances} instances | URL | median ms | p95 ms |")
    print("|---|---|---:|---:|")
    for label, path, med, p95 in rows:
        print(f"| {label} | `{path}` | {med:.0f} | {p95:.0f} |")
    print(f"\n(cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
