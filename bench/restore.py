"""Boot restore after a SIGKILL: how long until every instance is ready again, and the first send.

Usage: ``.venv/bin/python bench/restore.py [--count 1000] [--engine sandbox|whatsmeow] [--concurrency 25]``

1. starts ``wa-hub serve`` (sandbox engine, or whatsmeow with the offline fake client) on a fresh
   data directory and creates ``--count`` linked instances (sandbox: auto-link; whatsmeow: a
   stored fake session written for each instance, as a scan leaves it);
2. SIGKILLs the process (the store still says ``ready`` for all of them);
3. starts it again and measures, from the new process's start: ``/health`` answering, the first
   instance ``ready``, a send enqueued at once on that instance reaching ``sent``, and every
   instance ``ready``.

Prints one Markdown table row. Nothing touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-restore-key-0123456789abcdef"
FAKE = "wahub.engines.whatsmeow.fakeclient:FakeClient"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(data: Path, port: int, engine: str, concurrency: int) -> subprocess.Popen[bytes]:
    """``wa-hub serve`` in its own process group, logging to ``data/serve.log``."""
    env = {**os.environ, "API_KEY": KEY, "DATA_DIR": str(data), "PORT": str(port), "HOST": "127.0.0.1",
           "WAHUB_ENGINE": engine, "LOG_LEVEL": "warning", "LOG_FORMAT": "json", "SANDBOX_AUTO_LINK_MS": "1",
           "SANDBOX_SEND_LATENCY_MS": "0", "RESTORE_CONCURRENCY": str(concurrency),
           "WAHUB_WHATSMEOW_FAKE_CLIENT": FAKE}
    log = open(data / "serve.log", "ab")  # noqa: SIM115 - the child keeps the descriptor
    return subprocess.Popen([sys.executable, "-m", "wahub.cli", "serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait(fn: Any, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``fn()`` until truthy; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def states(client: httpx.Client) -> dict[str, str]:
    """Instance id → state, from one list call."""
    body = client.get("/instances").json()
    items = body if isinstance(body, list) else body.get("instances", body.get("data", []))
    return {i["id"]: i["state"] for i in items}


def linked_all(client: httpx.Client) -> bool:
    """True when every instance is ready; one whose QR window passed unscanned is restarted (it links then)."""
    st = states(client)
    for iid, state in st.items():
        if state == "needs_qr":
            client.post(f"/instances/{iid}/restart", json={"type": "hard"})
    return all(s == "ready" for s in st.values())


def run(count: int, engine: str, concurrency: int) -> dict[str, Any]:
    """Measure one restore; returns the figures (seconds)."""
    data = Path(tempfile.mkdtemp(prefix="wahub-restore-"))
    port = free_port()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {KEY}"},
                          timeout=60)
    proc = start(data, port, engine, concurrency)
    try:
        wait(lambda: client.get("/health").status_code == 200, 60)
        for n in range(count):
            r = client.post("/instances", json={"name": f"shop-{n:04d}"})
            assert r.status_code in (200, 201), r.text
        if engine == "whatsmeow":  # the session a scan leaves behind, for every instance
            for iid in states(client):
                session = data / "sessions" / iid
                session.mkdir(parents=True, exist_ok=True)
                (session / "fake-session.json").write_text(json.dumps({"phone": "2010000" + iid[-4:].zfill(5),
                                                                        "push_name": "Bench"}))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            proc = start(data, port, engine, concurrency)
            wait(lambda: client.get("/health").status_code == 200, 60)
        wait(lambda: linked_all(client), 600, 0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # SIGKILL: the store keeps "ready" for every instance
        proc.wait(30)

    t0 = time.monotonic()
    proc = start(data, port, engine, concurrency)
    try:
        wait(lambda: client.get("/health").status_code == 200, 60, 0.01)
        health = time.monotonic() - t0
        first = "shop-0000"
        r = client.post(f"/instances/{first}/client/action/send-message",
                        json={"chatId": "201000000001", "message": "first after restart"})
        queue_id = r.json()["queueId"]
        first_ready = first_sent = None
        while True:
            now = time.monotonic() - t0
            st = states(client)
            if first_ready is None and st.get(first) == "ready":
                first_ready = now
            if first_sent is None:
                item = client.get(f"/instances/{first}/messages/{queue_id}").json()["item"]
                if item["status"] == "sent":
                    first_sent = now
            ready = sum(1 for s in st.values() if s == "ready")
            if ready == len(st) and first_sent is not None:
                return {"count": count, "engine": engine, "concurrency": concurrency, "health_s": health,
                        "first_ready_s": first_ready, "first_sent_s": first_sent, "all_ready_s": now}
            if now > 900:
                raise TimeoutError(f"restore not finished after 900 s: {ready}/{len(st)} ready")
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--engine", choices=("sandbox", "whatsmeow"), default="sandbox")
    parser.add_argument("--concurrency", type=int, default=25)
    args = parser.parse_args()
    f = run(args.count, args.engine, args.concurrency)
    print("| engine | instances | RESTORE_CONCURRENCY | /health | first ready | first send | all ready |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {f['engine']} | {f['count']} | {f['concurrency']} | {f['health_s']:.1f} s | {f['first_ready_s']:.1f} s "
          f"| {f['first_sent_s']:.1f} s | {f['all_ready_s']:.1f} s |")


if __name__ == "__main__":
    main()
