"""Webhook delivery throughput: stored events to fast loopback receivers, and the hub's CPU meanwhile.

For each case (default: 100 instances to **one** receiver URL, and 100 instances to **100** receivers):

1. a receiver process (this file with ``--serve``) listens on the receivers' ports and answers every
   POST with ``200`` and an empty body at once (keep-alive);
2. ``wa-hub serve`` (sandbox engine, SQLite, default log level) creates the instances with their
   webhook URLs and stops;
3. ``--events`` pending ``message`` events per instance (a 0.4 KB body each) are inserted into
   ``webhook_events`` directly;
4. the hub starts again; its dispatcher delivers every pending event (one lane per instance, in
   order; ``WEBHOOK_MAX_IN_FLIGHT_PER_URL`` per receiver, default 2). The run ends when none is
   pending. Events per second come from the hub's own ``delivered_at`` stamps (first to last), hub
   CPU from ``/proc/<pid>/stat`` over the same stretch.

Usage: ``.venv/bin/python bench/webhooks.py --events 50``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.enqueue import API_KEY, Hub, free_port, machine  # noqa: E402

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class _Answer(asyncio.Protocol):
    """Answers each complete request (head + content-length body) with 200 at once."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buf[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            self.buf = self.buf[end:]
            self.transport.write(_OK)


def serve(ports: list[int]) -> None:
    """Run the receivers until SIGTERM."""
    async def run() -> None:
        loop = asyncio.get_running_loop()
        for port in ports:
            await loop.create_server(_Answer, "127.0.0.1", port)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("listening", flush=True)
        await stop.wait()

    try:
        import uvloop
        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


def body(instance_id: str, n: int) -> str:
    """A ``message`` event body of about 0.4 KB."""
    return json.dumps({"event": "message", "instanceId": instance_id, "data": {"message": {
        "from": "201000000001", "body": f"inbound message number {n} with some text", "type": "chat",
        "timestamp": 1767225600 + n, "id": f"3EB0{n:016X}", "chatId": "201000000001@c.us",
        "fromId": "201000000001@s.whatsapp.net", "pushName": "Bench"}}, "timestamp": 1767225600 + n},
        separators=(",", ":"))


def case(receivers: int, instances: int, events: int, workdir: Path) -> dict[str, Any]:
    """One run: ``instances`` instances spread over ``receivers`` receiver URLs."""
    ports = [free_port() for _ in range(receivers)]
    rx = subprocess.Popen([sys.executable, __file__, "--serve", ",".join(map(str, ports))],
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout is not None
    rx.stdout.readline()
    data = workdir / f"rx{receivers}"
    data.mkdir()
    hub = Hub(data, None, {"LOG_LEVEL": "info"})
    try:
        hub.start()
        with httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
            for n in range(instances):
                url = f"http://127.0.0.1:{ports[n % receivers]}/hook"
                c.post("/instances", json={"name": f"hook{n:03d}", "webhook": {"url": url, "events": ["message"]}}
                       ).raise_for_status()
        hub.stop()
        db = data / "wa-hub.sqlite3"
        conn = sqlite3.connect(db)
        with conn:
            now = int(time.time() * 1000)
            conn.executemany(
                "INSERT INTO webhook_events (event_id, instance_id, event, body, status, attempts, next_attempt_at,"
                " created_at) VALUES (?, ?, 'message', ?, 'pending', 0, ?, ?)",
                [(f"evt_{uuid.uuid4().hex}", f"hook{n:03d}", body(f"hook{n:03d}", k), now, now)
                 for k in range(events) for n in range(instances)])
        conn.close()
        load_before = os.getloadavg()[0]
        hub.start()
        cpu0, t0 = hub.cpu_s(), time.monotonic()
        ro = f"file:{db}?mode=ro"
        while True:
            c2 = sqlite3.connect(ro, uri=True, timeout=30)
            pending = c2.execute("SELECT count(*) FROM webhook_events WHERE status = 'pending'").fetchone()[0]
            c2.close()
            if pending == 0 or time.monotonic() - t0 > 300:
                break
            time.sleep(0.2)
        cpu, wall = hub.cpu_s() - cpu0, time.monotonic() - t0
        c2 = sqlite3.connect(ro, uri=True, timeout=30)
        first, last, delivered = c2.execute(
            "SELECT min(delivered_at), max(delivered_at), count(*) FROM webhook_events "
            "WHERE status = 'delivered' AND event = 'message'").fetchone()
        c2.close()
        hub.stop()
    finally:
        hub.stop()
        rx.terminate()
        rx.wait(10)
    span_s = max(0.001, (last - first) / 1000) if delivered else float("nan")
    return {"receivers": receivers, "instances": instances, "events": instances * events, "delivered": delivered,
            "events_per_s": round(delivered / span_s), "hub_cpu_pct": round(100 * cpu / wall, 1),
            "cpu_us_per_event": round(cpu / max(1, delivered) * 1e6), "wall_s": round(wall, 1),
            "load1_before": round(load_before, 2), "load1_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--events", type=int, default=50, help="pending events per instance")
    parser.add_argument("--receivers", default="1,100", help="comma-separated receiver counts, one run each")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.serve:
        serve([int(p) for p in args.serve.split(",")])
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="wahub-hooks-") as tmp:
        for receivers in (int(r) for r in args.receivers.split(",")):
            row = case(receivers, args.instances, args.events, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(json.dumps({"machine": machine()}))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
