"""The official WaAPI Python SDK (PyPI `waapi`) works unchanged against wa-hub (WAAPI_ENVELOPE=true)."""

from __future__ import annotations

from pathlib import Path

import pytest
from waapi import WaAPI

from tests.support.server import API_KEY, Server


@pytest.mark.timeout(90)
def test_sdk_calls_complete_and_sends_reach_the_sandbox(tmp_path: Path) -> None:
    with Server(tmp_path / "hub", env={"WAAPI_ENVELOPE": "true", "SEND_INTERVAL_MS": "50"}) as hub:
        c = hub.client
        iid = c.post("/instances", json={"name": "sdk-shop"}).json()["instance"]["id"]
        sdk = WaAPI(token=API_KEY, instance_id=iid, base_url=hub.url)
        try:
            hub.wait_until(lambda: c.get(f"/instances/{iid}/client/qr").status_code == 200)
            qr = sdk.get_qr_code()
            assert qr["qrCode"]["data"]["qr_code"]
            c.post(f"/sandbox/instances/{iid}/scan")
            hub.wait_until(lambda: sdk.get_status()["clientStatus"]["instanceStatus"] == "ready")

            sent = sdk.send_message(chat_id="201000000001@c.us", message="Hello from the SDK")
            assert sent["status"] == "success" and sent["data"]["status"] == "success"
            poll = sdk.create_poll(chat_id="201000000001@c.us", caption="Confirm?", options=["Yes", "No"],
                                   multiple_answers=False)
            assert poll["data"]["queueId"]
            assert any(i["id"] == iid for i in sdk.get_instances())
            assert sdk.get_instance()["instance"]["id"] == iid

            def delivered() -> list[dict[str, object]]:
                return c.get(f"/sandbox/instances/{iid}/sent").json()["messages"]

            msgs = hub.wait_until(lambda: len(d := delivered()) == 2 and d)
            assert {m["kind"] for m in msgs} == {"text", "poll"}
            assert sdk.get_qr_code()["qrCode"]["data"]["qr_code"] is None  # linked: nothing to scan

            sdk.logout()
            assert c.get(f"/instances/{iid}/client/status").json()["clientStatus"]["state"] == "logged_out"
            sdk.delete_instance()
            assert c.get(f"/instances/{iid}").status_code == 404
        finally:
            sdk.close()
