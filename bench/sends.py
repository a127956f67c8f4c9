"""Send throughput across instances and pacing lateness when many instances become ready at once.

1. ``wa-hub serve`` (sandbox engine, SQLite) with the limits raised: ``--interval-ms`` between sends
   of one instance (default 1,000 ms, i.e. 1,000 instances ask for 1,000 sends/s), 60 per minute,
   3,600 per hour, no engine latency, no automatic receipts, no webhook URL.
2. ``--instances`` instances are created unlinked and ``--per-instance`` messages queued on each.
3. The hub is restarted with ``SANDBOX_AUTO_LINK_MS=0`` and ``RESTORE_STAGGER_MS=0``: every instance
   links at once and starts draining. The run ends when every item is ``sent`` (read from the
   SQLite file, read-only).
4. From the sandbox's own delivery stamps (``GET /sandbox/instances/{id}/sent``): sends per second
   over the drain, and the pacing lateness of every send after an instance's first, i.e. how much
   later than ``previous send + interval`` it reached the engine (p50/p99/max), plus when each
   instance's first send arrived after the hub answered ``/ready``. Hub CPU over the drain from
   ``/proc/<pid>/stat``.

Usage: ``.venv/bin/python bench/sends.py --instances 1000 --per-instance 10``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.enqueue import API_KEY, Hub, machine  # noqa: E402


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def populate(url: str, instances: int, per_instance: int, *, new_numbers: bool = True) -> None:
    """Create the instances and queue ``per_instance`` messages on each, 16 requests at a time: each
    to a number not seen before (``new_numbers``, the order-confirmation case) or all to one number."""
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as c:
        sem = asyncio.Semaphore(16)

        async def one(method: str, path: str, body: dict[str, Any], key: str | None = None) -> None:
            async with sem:
                h = {"idempotency-key": key} if key else {}
                r = await c.request(method, path, json=body, headers=h)
                r.raise_for_status()

        await asyncio.gather(*(one("POST", "/instances", {"name": f"fleet{n:04d}"}) for n in range(instances)))
        await asyncio.gather(*(
            one("POST", f"/instances/fleet{n:04d}/client/action/send-message",
                {"chatId": f"2010{n:04d}{k if new_numbers else 0:04d}@c.us", "message": f"m{k}"}, key=f"k{n}-{k}")
            for k in range(per_instance) for n in range(instances)))


async def deliveries(url: str, instances: int) -> dict[str, list[int]]:
    """The sandbox's delivery stamps (epoch ms) per instance."""
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
        sem = asyncio.Semaphore(16)

        async def one(n: int) -> tuple[str, list[int]]:
            async with sem:
                r = await c.get(f"/sandbox/instances/fleet{n:04d}/sent")
                r.raise_for_status()
                return f"fleet{n:04d}", sorted(m["at"] for m in r.json()["messages"])

        return dict(await asyncio.gather(*(one(n) for n in range(instances))))


def sent_count(db: Path) -> int:
    """Items in status ``sent`` (read-only connection to the hub's SQLite file)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--per-instance", type=int, default=10)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--timeout", type=int, default=600, help="give up after this many seconds of draining")
    parser.add_argument("--pythonpath", default=None, help="run the hub from this source tree (e.g. older code)")
    parser.add_argument("--profile", default=None, help="write py-spy stacks (raw) of the hub's drain to this file")
    parser.add_argument("--out", default=None)
    parser.add_argument("--stamps", default=None, help="write every instance's delivery stamps (JSON) to this file")
    parser.add_argument("--same-number", action="store_true",
                        help="every item of an instance to one number (only the first send asks WhatsApp)")
    args = parser.parse_args()
    total = args.instances * args.per_instance
    env = {"MAX_SENDS_PER_MINUTE_PER_INSTANCE": "60", "MAX_SENDS_PER_HOUR_PER_INSTANCE": "3600",
           "SEND_INTERVAL_MS": str(args.interval_ms), "SANDBOX_SEND_LATENCY_MS": "0", "SANDBOX_AUTO_ACK": "false",
           "MAX_QUEUE_SIZE": "100000", "SANDBOX_QR_REFRESH_MS": "3600000"}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    tmp = tempfile.mkdtemp(prefix="wahub-sends-")  # kept: the server log is there (removed on success)
    data = Path(tmp)
    hub = Hub(data, None, env)
    hub.start()
    t = time.monotonic()
    asyncio.run(populate(hub.url, args.instances, args.per_instance, new_numbers=not args.same_number))
    print(f"created {args.instances} instances and queued {total} items in {time.monotonic() - t:.0f} s",
          flush=True)
    hub.stop()
    hub.env.update({"SANDBOX_AUTO_LINK_MS": "0", "RESTORE_STAGGER_MS": "0"})
    load_before = os.getloadavg()[0]
    hub.start()
    ready_ms = int(time.time() * 1000)
    cpu0, t0 = hub.cpu_s(), time.monotonic()
    spy = None
    if args.profile:
        assert hub.proc is not None
        spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(hub.proc.pid),
                                "--format", "raw", "--rate", "200", "--nonblocking", "--output", args.profile],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = data / "wa-hub.sqlite3"
    while sent_count(db) < total:
        if time.monotonic() - t0 > args.timeout:
            break
        time.sleep(0.5)
    drain_s = time.monotonic() - t0
    cpu = hub.cpu_s() - cpu0
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    stamps = asyncio.run(deliveries(hub.url, args.instances))
    load_after = os.getloadavg()[0]
    hub.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    if args.stamps:
        Path(args.stamps).write_text(json.dumps({"ready_ms": ready_ms, "stamps": stamps}))
    all_at = sorted(a for v in stamps.values() for a in v)
    late = [float(b - a - args.interval_ms) for v in stamps.values() for a, b in zip(v, v[1:], strict=False)]
    first = [float(v[0] - ready_ms) for v in stamps.values() if v]
    span_s = (all_at[-1] - all_at[0]) / 1000 if len(all_at) > 1 else float("nan")
    # Once every instance has sent its first message (all restored and linked): the steady rate.
    all_ready = max((v[0] for v in stamps.values() if v), default=0)
    steady = [a for a in all_at if a > all_ready]
    steady_s = (steady[-1] - all_ready) / 1000 if steady else float("nan")
    late_steady = [float(b - a - args.interval_ms) for v in stamps.values()
                   for a, b in zip(v, v[1:], strict=False) if b > all_ready]
    row = {"instances": args.instances, "per_instance": args.per_instance, "interval_ms": args.interval_ms,
           "numbers": "one per instance" if args.same_number else "new per item",
           "delivered": len(all_at), "expected": total, "asked_per_s": round(args.instances * 1000 / args.interval_ms),
           "sends_per_s": round(len(all_at) / span_s, 1) if span_s == span_s and span_s > 0 else None,
           "steady_sends_per_s": round(len(steady) / steady_s, 1) if steady and steady_s > 0 else None,
           "steady_late_p50_ms": pct(late_steady, 50), "steady_late_p99_ms": pct(late_steady, 99),
           "drain_s": round(drain_s, 1), "hub_cpu_s": round(cpu, 1), "hub_cpu_pct": round(100 * cpu / drain_s, 1),
           "late_p50_ms": pct(late, 50), "late_p99_ms": pct(late, 99), "late_max_ms": max(late, default=None),
           "late_mean_ms": round(statistics.fmean(late), 1) if late else None,
           "first_send_p50_ms": pct(first, 50), "first_send_p99_ms": pct(first, 99),
           "load1_before": round(load_before, 2), "load1_after": round(load_after, 2), "machine": machine()}
    print(json.dumps(row, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
