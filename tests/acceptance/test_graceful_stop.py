"""A clean stop (SIGTERM) lets the send in flight finish: after a restart it is sent, once, and nothing is
uncertain. Observed on the sandbox's durable delivery log, across the real process's restart."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.support.server import Server


def _deliveries(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_with_a_send_in_flight_finishes_it_and_leaves_nothing_uncertain(tmp_path: Path) -> None:
    log = tmp_path / "deliveries.jsonl"
    env = {"SANDBOX_SEND_LATENCY_MS": "3000", "SANDBOX_DELIVERY_LOG": str(log), "SANDBOX_AUTO_ACK": "false",
           "SHUTDOWN_GRACE_MS": "10000"}
    server = Server(tmp_path / "data", env=env)
    try:
        server.start()
        iid = server.client.post("/instances", json={"name": "graceful"}).json()["instance"]["id"]
        server.wait_until(lambda: server.client.post(f"/sandbox/instances/{iid}/scan").status_code == 200)
        server.wait_until(lambda: server.client.get(f"/instances/{iid}").json()["instance"]["state"] == "ready")
        r = server.client.post(f"/instances/{iid}/client/action/send-message",
                               json={"chatId": "201000000001", "message": "order 1001 confirmed"},
                               headers={"Idempotency-Key": "order:1001"})
        assert r.status_code == 202, r.text
        queue_id = r.json()["queueId"]
        server.wait_until(lambda: server.client.get(f"/instances/{iid}/messages/{queue_id}").json()["item"]
                          ["status"] == "sending")  # handed to the engine; its answer takes 3 s
        time.sleep(1.0)  # the moment of the stop: about 1 s into a 3 s send (not a wait for a condition)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        assert "shutdown_drained" in server.log_text()
        server.start()
        item = server.client.get(f"/instances/{iid}/messages/{queue_id}").json()["item"]
        assert item["status"] == "sent", item
        uncertain = server.client.get(f"/instances/{iid}/outbox", params={"status": "uncertain"}).json()
        assert uncertain["total"] == 0
        deliveries = _deliveries(log)
        assert [d["text"] for d in deliveries] == ["order 1001 confirmed"]
        assert deliveries[0]["messageId"] == item["messageId"]
    finally:
        server.stop()
        server.client.close()
