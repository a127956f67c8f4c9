"""Guessing the API key is braked per client (429 + Retry-After), logged with the address; logout ends a session."""

from __future__ import annotations

import re

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import HubClient
from tests.support.server import API_KEY
from wahub.dashboard import session as sessions
from wahub.domain.brake import BURST, REFILL_MS, FailureBrake

WRONG = "wrong-key-sentinel-55521"


def client_from(hub_client: HubClient, address: str, **kw: object) -> httpx.AsyncClient:
    app = hub_client.client._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                             base_url="http://hub", **kw)  # type: ignore[arg-type]


def test_the_brake_opens_again_as_failures_drain() -> None:
    brake, now = FailureBrake(), 1_000_000
    for _ in range(BURST - 1):
        assert not brake.failed("a", now)
    assert brake.retry_after_s("a", now) == 0
    assert brake.failed("a", now)  # the tenth failure closes it
    assert brake.retry_after_s("a", now) == REFILL_MS // 1000
    assert brake.retry_after_s("b", now) == 0  # per client
    assert brake.retry_after_s("a", now + REFILL_MS) == 0  # one failure drained: one more try


async def test_wrong_api_keys_are_braked_per_client_and_logged_without_the_key(hub_client: HubClient) -> None:
    async with client_from(hub_client, "203.0.113.7", headers={"authorization": f"Bearer {WRONG}"}) as guesser, \
            client_from(hub_client, "203.0.113.7", headers={"authorization": f"Bearer {API_KEY}"}) as same_ip, \
            client_from(hub_client, "198.51.100.9", headers={"authorization": f"Bearer {API_KEY}"}) as other:
        with capture_logs() as logs:
            statuses = [(await guesser.get("/instances")).status_code for _ in range(BURST)]
            assert statuses == [403] * BURST  # a wrong key is 403, as the existing wa-hub answered
            r = await guesser.get("/instances")
            assert r.status_code == 429
            assert 1 <= int(r.headers["retry-after"]) <= REFILL_MS // 1000
            assert "too many failed attempts" in r.json()["error"]
            # while braked even the right key is not looked at from that address ...
            assert (await same_ip.get("/instances")).status_code == 429
            # ... but other clients and the public paths are untouched
            assert (await other.get("/instances")).status_code == 200
            assert (await guesser.get("/health")).status_code == 200
    rejected = [e for e in logs if e["event"] == "api_key_rejected"]
    assert len(rejected) == BURST and all(e["client"] == "203.0.113.7" for e in rejected)
    assert any(e["event"] == "auth_brake_closed" and e["client"] == "203.0.113.7" for e in logs)
    assert WRONG not in repr(logs) and API_KEY not in repr(logs)


async def test_failed_dashboard_logins_are_braked_and_logged_with_the_address(hub_client: HubClient) -> None:
    async with client_from(hub_client, "203.0.113.8", follow_redirects=False) as browser:
        with capture_logs() as logs:
            for _ in range(BURST):
                r = await browser.post("/dashboard/login", data={"api_key": WRONG})
                assert r.status_code == 401
            r = await browser.post("/dashboard/login", data={"api_key": API_KEY})
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1
            assert sessions.COOKIE_NAME not in r.cookies
    failed = [e for e in logs if e["event"] == "dashboard_login_failed"]
    assert len(failed) == BURST and all(e["client"] == "203.0.113.8" for e in failed)
    assert WRONG not in repr(logs)


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/new"])
async def test_logout_ends_the_session_on_the_server(hub_client: HubClient, path: str) -> None:
    async with client_from(hub_client, "127.0.0.1", follow_redirects=False) as browser:
        r = await browser.post("/dashboard/login", data={"api_key": API_KEY})
        assert r.status_code == 303
        cookie = r.cookies[sessions.COOKIE_NAME]
        jar = {"cookie": f"{sessions.COOKIE_NAME}={cookie}"}
        page = await browser.get(path, headers=jar)
        assert page.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        assert (await browser.post("/dashboard/logout", headers=jar,
                                   data={"csrf_token": token.group(1)})).status_code == 303
        browser.cookies.clear()
        # the same cookie, replayed after logout (as a copy kept by an attacker would be)
        again = await browser.get(path, headers=jar)
        assert again.status_code == 303 and again.headers["location"].startswith("/dashboard/login")
        assert (await browser.post("/dashboard/logout", headers=jar,
                                   data={"csrf_token": token.group(1)})).status_code == 401
