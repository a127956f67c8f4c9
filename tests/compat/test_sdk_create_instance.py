"""The official WaAPI SDK's ``create_instance()`` (POST /instances with no body) creates a usable instance."""

from __future__ import annotations

from pathlib import Path

import pytest
from waapi import WaAPI

from tests.support.server import API_KEY, Server


@pytest.mark.timeout(90)
@pytest.mark.parametrize("envelope", ["true", "false"])
def test_sdk_create_instance_generates_an_id_that_then_links(tmp_path: Path, envelope: str) -> None:
    with Server(tmp_path / "hub", env={"WAAPI_ENVELOPE": envelope}) as hub:
        sdk = WaAPI(token=API_KEY, base_url=hub.url)
        try:
            created = sdk.create_instance()
            iid = created["instance"]["id"]
            assert isinstance(iid, str) and iid
            bound = WaAPI(token=API_KEY, instance_id=iid, base_url=hub.url)
            try:
                hub.wait_until(lambda: hub.client.get(f"/instances/{iid}/client/qr").status_code == 200)
                assert bound.get_qr_code()["qrCode"]["data"]["qr_code"]
                hub.client.post(f"/sandbox/instances/{iid}/scan")
                hub.wait_until(lambda: bound.get_status()["clientStatus"]["instanceStatus"] == "ready")
            finally:
                bound.close()
        finally:
            sdk.close()
