"""``wa-hub status`` and ``wa-hub qr ID`` against a real ``wa-hub serve`` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import API_KEY, Server

pytestmark = pytest.mark.slow


def cli(hub: Server, *args: str, key: str = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAHUB_URL": hub.url, "API_KEY": key}
    return subprocess.run([sys.executable, "-m", "wahub.cli", *args], env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.timeout(90)
def test_status_table_and_terminal_qr(tmp_path: Path) -> None:
    with Server(tmp_path / "hub", env={"SEND_INTERVAL_MS": "0"}) as hub:
        c = hub.client
        linked = c.post("/instances", json={"name": "linked-shop"}).json()["instance"]["id"]
        waiting = c.post("/instances", json={"name": "waiting-shop"}).json()["instance"]["id"]
        hub.wait_until(lambda: c.get(f"/instances/{waiting}/client/qr").status_code == 200)
        hub.wait_until(lambda: c.get(f"/instances/{linked}/client/qr").status_code == 200)
        assert c.post(f"/sandbox/instances/{linked}/scan", json={"phone": "201000000042"}).status_code == 200
        hub.wait_until(lambda: c.get(f"/instances/{linked}").json()["instance"]["state"] == "ready")
        r = c.post(f"/instances/{linked}/client/action/send-message", json={"chatId": "201000000001",
                                                                           "message": "hello"})
        assert r.status_code == 202
        hub.wait_until(lambda: c.get(f"/instances/{linked}/status").json()["counters"]["sent1h"] == 1)
        c.post(f"/instances/{waiting}/client/action/send-message", json={"chatId": "201000000001",
                                                                        "message": "waits"})

        out = cli(hub, "status")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["ID", "STATE", "PHONE", "QUEUE", "SENT1H", "LAST", "ERROR"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert rows[linked][:5] == [linked, "ready", "201000000042", "0", "1"]
        assert rows[waiting][:5] == [waiting, "connecting", "-", "1", "0"]

        qr = cli(hub, "qr", waiting)
        assert qr.returncode == 0, qr.stderr
        art = [line for line in qr.stdout.splitlines() if line.strip()]
        assert len(art) >= 10 and any(ch in qr.stdout for ch in "█▀▄")

        done = cli(hub, "qr", linked)
        assert done.returncode == 1
        assert "linked" in done.stderr

        denied = cli(hub, "status", key="not-the-api-key")
        assert denied.returncode == 1 and "HTTP 403" in denied.stderr
