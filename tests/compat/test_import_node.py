"""``wa-hub import-node DIR`` moves the old hub's instances and sent keys; nothing the old hub sent is sent again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import Server

OLD_INSTANCES = [
    {"id": "WASP-shop_myshopify_com", "name": "WASP-shop.myshopify.com", "webhookUrl": "http://127.0.0.1:9/hook",
     "webhookEvents": ["vote_update", "message", "media_uploaded"], "typingIndicatorEnabled": True,
     "applyTypingTo": ["customer"], "createdAt": "2026-01-05T10:00:00.000Z"},
    {"id": "second", "name": "second", "webhookUrl": "http://127.0.0.1:9/other", "webhookEvents": [],
     "createdAt": None},
]
OLD_KEYS = [
    {"idempotencyKey": "order:shop:1001:confirmPoll:v1", "instanceName": "WASP-shop.myshopify.com",
     "queueItemId": "q-1", "status": "SENT", "createdAt": "2026-11-29T09:00:00.000Z",
     "updatedAt": "2026-11-29T09:00:01.000Z", "sentAt": "2026-11-29T09:00:01.000Z",
     "providerMessageId": "true_201000000001@c.us_3EB0OLD0001", "error": None},
    {"idempotencyKey": "order:shop:1002:customerAck:v1", "instanceName": "WASP-shop.myshopify.com",
     "queueItemId": "q-2", "status": "FAILED", "createdAt": "2026-11-29T09:05:00.000Z",
     "updatedAt": "2026-11-29T09:05:00.000Z", "sentAt": None, "providerMessageId": None, "error": "boom"},
    {"idempotencyKey": "order:gone:1:v1", "instanceName": "deleted-shop", "status": "SENT",
     "createdAt": "2026-11-29T09:00:00.000Z", "sentAt": "2026-11-29T09:00:00.000Z", "providerMessageId": "X"},
]


def import_node(old: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data_dir), "WAHUB_ENGINE": "sandbox"}  # the settings `serve` runs with
    env.pop("API_KEY", None)
    return subprocess.run([sys.executable, "-m", "wahub.cli", "import-node", str(old)], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(120)
def test_imported_instances_ask_for_a_qr_and_sent_keys_are_never_sent_again(tmp_path: Path) -> None:
    old = tmp_path / "old-hub"
    old.mkdir()
    (old / ".wwebjs_instances.json").write_text(json.dumps(OLD_INSTANCES, indent=2))
    (old / ".wwebjs_idempotency.json").write_text(json.dumps(OLD_KEYS, indent=2))
    data = tmp_path / "hub"

    out = import_node(old, data)
    assert out.returncode == 0, out.stderr
    assert "instances created: 2" in out.stdout
    assert "sent idempotency keys imported: 1" in out.stdout
    assert "asking for a QR code" in out.stdout
    assert "media_uploaded" in out.stdout
    again = import_node(old, data)
    assert "instances created: 0" in again.stdout and "imported: 0 (already here: 1)" in again.stdout

    with Server(data, env={"SEND_INTERVAL_MS": "0"}) as hub:
        c = hub.client
        listed = {i["id"]: i for i in c.get("/instances").json()}
        assert set(listed) == {"WASP-shop_myshopify_com", "second"}
        shop = listed["WASP-shop_myshopify_com"]
        assert (shop["name"], shop["webhookUrl"], shop["webhookEvents"]) == (
            "WASP-shop.myshopify.com", "http://127.0.0.1:9/hook", ["vote_update", "message"])
        assert (shop["typingIndicatorEnabled"], shop["applyTypingTo"]) == (True, ["customer"])
        assert (listed["second"]["typingIndicatorEnabled"], listed["second"]["applyTypingTo"]) == (None, None)
        for iid in listed:  # every imported instance comes up asking for a QR
            hub.wait_until(lambda i=iid: c.get(f"/instances/{i}/client/qr").status_code == 200)
        iid = "WASP-shop_myshopify_com"
        c.post(f"/sandbox/instances/{iid}/scan")
        hub.wait_until(lambda: c.get(f"/instances/{iid}").json()["instance"]["state"] == "ready")

        body = {"chatId": "201000000001", "caption": "Confirm order #1001?", "options": ["Yes", "No"],
                "idempotencyKey": "order:shop:1001:confirmPoll:v1"}
        repeat = c.post(f"/instances/{iid}/client/action/create-poll", json=body)
        assert repeat.status_code == 200, repeat.text  # a replay of what the old hub sent, never queued again
        assert repeat.json()["messageId"] == "true_201000000001@c.us_3EB0OLD0001"
        failed = c.post(f"/instances/{iid}/client/action/send-message", json={
            "chatId": "201000000001", "message": "Thanks!", "idempotencyKey": "order:shop:1002:customerAck:v1"})
        assert failed.status_code == 202, failed.text  # the old hub never sent it: it goes now
        hub.wait_until(lambda: len(c.get(f"/sandbox/instances/{iid}/sent").json()["messages"]) == 1)
        delivered = c.get(f"/sandbox/instances/{iid}/sent").json()["messages"]
        assert [m["kind"] for m in delivered] == ["text"]


def test_a_directory_without_the_old_instance_list_is_refused_by_name(tmp_path: Path) -> None:
    out = import_node(tmp_path, tmp_path / "hub")
    assert out.returncode == 1
    assert ".wwebjs_instances.json" in out.stderr and "INSTANCES_DATA_PATH" in out.stderr
