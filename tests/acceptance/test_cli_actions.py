"""``wa-hub scan | pairing-code | logout | restart`` drive a running hub (sandbox engine) end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import API_KEY, Server


def wa_hub(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAHUB_URL": server.url, "API_KEY": API_KEY}
    return subprocess.run([sys.executable, "-m", "wahub.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def state(server: Server, iid: str) -> str:
    """The instance's state, or ``qr`` while it waits for a QR scan."""
    inst = server.client.get(f"/instances/{iid}/status").json()["instance"]
    return "qr" if inst["status"] == "qr" else str(inst["state"])


@pytest.mark.timeout(120)
def test_scan_pairing_code_logout_and_restart(tmp_path: Path) -> None:
    with Server(tmp_path / "hub", env={"RESTART_BACKOFF_MS": "0"}) as hub:
        iid = hub.client.post("/instances", json={"name": "cli-actions",
                                                  "webhook": {"url": "http://127.0.0.1:9/hook"}}).json()["instance"]["id"]
        hub.wait_until(lambda: state(hub, iid) == "qr")

        code = wa_hub(hub, "pairing-code", iid, "+20 100 000 0009")
        assert code.returncode == 0, code.stderr
        assert re.fullmatch(r"pairing code: \S{8,9}\n", code.stdout), code.stdout

        scanned = wa_hub(hub, "scan", iid, "--phone", "201000000009")
        assert scanned.returncode == 0, scanned.stderr
        hub.wait_until(lambda: state(hub, iid) == "ready")
        assert hub.client.get(f"/instances/{iid}/status").json()["client"]["phoneNumber"] \
            == "201000000009"

        already = wa_hub(hub, "pairing-code", iid, "201000000009")
        assert already.returncode != 0 and "409" in already.stderr and "already linked" in already.stderr

        restarted = wa_hub(hub, "restart", iid, "--hard")
        assert restarted.returncode == 0, restarted.stderr
        assert "type: hard" in restarted.stdout
        budget = hub.client.get(f"/instances/{iid}/status").json()["reconnection"]["restartsInWindow"]
        assert budget >= 1
        hub.wait_until(lambda: state(hub, iid) == "ready")  # the stored session links again

        out = wa_hub(hub, "logout", iid)
        assert out.returncode == 0, out.stderr
        assert f"logged out {iid}" in out.stdout
        # Like the existing wa-hub, logout deletes the instance (create it again to link a phone).
        assert hub.client.get(f"/instances/{iid}/status").status_code == 404

        missing = wa_hub(hub, "restart", "no-such-instance")
        assert missing.returncode != 0 and "404" in missing.stderr


@pytest.mark.timeout(120)
def test_scan_says_when_the_engine_is_not_the_sandbox(tmp_path: Path) -> None:
    with Server(tmp_path / "hub", env={"WAHUB_ENGINE": "whatsmeow"}) as hub:
        out = wa_hub(hub, "scan", "anything")
        assert out.returncode != 0
        assert "WAHUB_ENGINE=sandbox" in out.stderr
