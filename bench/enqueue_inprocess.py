"""Enqueue CPU per request in one process: the ASGI app driven directly, no HTTP, no other process.

A steadier figure than ``bench/enqueue.py`` on a shared machine, because it counts CPU time of this one
process (all threads: the event loop and the database thread) and nothing of a load generator: a hub
(sandbox engine, SQLite file or ``--pg-url``, log level info written to a file) with 20 linked
instances gets ``--requests`` ``send-message`` calls, ``--concurrency`` at a time, each with a new
idempotency key, after a warm-up of 200. Printed: CPU µs per request, wall µs per request, the
answers' status codes and the mean enqueue batch size. ``--pythonpath`` runs another source tree
(e.g. ``git archive <commit> src``), so old and new code can be compared minutes apart.

Usage: ``.venv/bin/python bench/enqueue_inprocess.py [--requests 3000] [--env MAX_SENDS_PER_MINUTE_PER_INSTANCE=1]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

API_KEY = "bench-api-key-0123456789"
INSTANCES = 20


async def run(requests: int, concurrency: int, log_file: Any) -> dict[str, Any]:
    """Build the hub in this process, link the instances, drive the app; returns the figures."""
    import uvloop  # noqa: F401  (the server's loop; installed by main)

    from wahub import config
    from wahub.observability import configure_logging
    from wahub.runtime.compose import build_hub
    from wahub.web.app import create_app

    settings = config.load(log_level="info")
    try:  # as `wa-hub serve` configures them (older trees, run with --pythonpath, lack per_turn)
        configure_logging("info", "json", stream=log_file, cache=True, secrets=(settings.api_key,), per_turn=True)
    except TypeError:
        configure_logging("info", "json", stream=log_file, cache=True, secrets=(settings.api_key,))
    from wahub import cli
    getattr(cli, "_tune_gil", lambda: None)()
    hub = build_hub(settings)
    app = create_app(hub, manage_hub=False)
    sizes: list[int] = []
    flush = hub.store._enqueue._flush  # type: ignore[attr-defined]

    async def counted(reqs: Any) -> Any:
        sizes.append(len(reqs))
        return await flush(reqs)

    hub.store._enqueue._flush = counted  # type: ignore[attr-defined]
    await hub.start()
    try:
        for n in range(INSTANCES):
            await hub.create_instance(f"bench{n:02d}", None, None)
        deadline = time.monotonic() + 30
        while not all(rt.state.value == "ready" for rt in hub.instances.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("instances did not link")
            await asyncio.sleep(0.05)
        statuses: dict[int, int] = {}
        prefix = uuid.uuid4().hex[:8]

        async def one(n: int) -> None:
            key = f"{prefix}:{n}"
            body = json.dumps({"chatId": f"2010{n % 100000000:08d}@c.us", "message": f"benchmark {key}"}).encode()
            path = f"/instances/bench{n % INSTANCES:02d}/client/action/send-message"
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                     "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                                 (b"authorization", f"Bearer {API_KEY}".encode()),
                                 (b"idempotency-key", key.encode()), (b"content-length", str(len(body)).encode())],
                     "state": {}}
            sent = [False]

            async def receive() -> dict[str, Any]:
                if sent[0]:
                    await asyncio.sleep(3600)
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            await app(scope, receive, send)

        async def worker(start: int, count: int) -> None:
            for i in range(count):
                await one(start + i * concurrency)

        await asyncio.gather(*(worker(i, 200 // concurrency) for i in range(concurrency)))  # warm-up
        statuses.clear()
        sizes.clear()
        per_worker = requests // concurrency
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(10_000_000 + i, per_worker) for i in range(concurrency)))
        cpu1, wall1 = time.process_time(), time.perf_counter()
    finally:
        await hub.stop()
    done = per_worker * concurrency
    return {"cpu_us_per_req": round((cpu1 - cpu0) / done * 1e6), "wall_us_per_req": round((wall1 - wall0) / done * 1e6),
            "statuses": statuses, "mean_batch": round(sum(sizes) / max(1, len(sizes)), 1),
            "load1": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pg-url", default=None, help="a PostgreSQL database URL (default: a SQLite file)")
    parser.add_argument("--pythonpath", default=None, help="run this source tree (e.g. older code)")
    parser.add_argument("--env", action="append", default=[], help="extra setting VAR=VALUE (repeatable)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.child:  # a fresh interpreter, so --pythonpath and the settings apply from the first import
        with tempfile.TemporaryDirectory(prefix="wahub-inproc-") as tmp:
            env = {**os.environ, "API_KEY": API_KEY, "DATA_DIR": tmp, "WAHUB_ENGINE": "sandbox",
                   "SANDBOX_AUTO_LINK_MS": "0", "MAX_QUEUE_SIZE": "10000000", "RESTORE_STAGGER_MS": "0",
                   **dict(kv.split("=", 1) for kv in args.env)}
            if args.pg_url:
                env["DATABASE_URL"] = args.pg_url
            if args.pythonpath:
                env["PYTHONPATH"] = args.pythonpath
            cmd = [sys.executable, __file__, "--child", "--requests", str(args.requests),
                   "--concurrency", str(args.concurrency)]
            sys.exit(subprocess.run(cmd, env=env, check=False).returncode)
    import uvloop

    uvloop.install()
    with open(Path(os.environ["DATA_DIR"]) / "log.jsonl", "w") as log_file:
        result = asyncio.run(run(args.requests, args.concurrency, log_file))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
