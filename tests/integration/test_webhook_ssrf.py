"""Webhook URLs cannot reach link-local, metadata or (by default) private addresses — when set and when dialled.

Nothing here sends traffic outside loopback: refused addresses are produced by a resolver seam that maps
a name to 169.254.169.254 or 10.x without any DNS or connection, and the only connections made go to a
receiver on 127.0.0.1.
"""

from __future__ import annotations

import pytest

from tests.conftest import HubClient
from wahub.domain import webhookurl
from wahub.domain.errors import InvalidInput
from wahub.runtime import urlguard

DEFAULT = webhookurl.parse_policy("loopback")


def mapping(table: dict[str, list[str]], calls: list[str] | None = None) -> urlguard.Resolver:
    """A resolver that answers from ``table`` (and records each lookup), never asking DNS."""

    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError(f"{host} not in the test table")
        return table[host]

    return resolve


@pytest.mark.parametrize(("table", "url"), [
    ({"rebind.test": ["169.254.169.254"]}, "http://rebind.test/latest/meta-data/"),
    ({"internal.test": ["10.20.30.40"]}, "https://internal.test/hook"),
    ({"mixed.test": ["127.0.0.1", "169.254.169.254"]}, "http://mixed.test/hook"),
])
async def test_a_name_resolving_to_a_refused_address_is_refused_when_set(table: dict[str, list[str]],
                                                                         url: str) -> None:
    guard = urlguard.UrlGuard(DEFAULT, mapping(table))
    with pytest.raises(InvalidInput, match=r"webhook\.url refused: .* resolves to"):
        await guard.checked(url)


async def test_private_names_pass_when_the_setting_opens_them_and_unknown_names_wait_for_connect() -> None:
    opened = urlguard.UrlGuard(webhookurl.parse_policy("loopback,private"), mapping({"lan.test": ["10.0.0.7"]}))
    assert await opened.checked("http://lan.test/hook") == "http://lan.test/hook"
    assert await urlguard.UrlGuard(DEFAULT, mapping({})).checked("https://later.test/hook") == "https://later.test/hook"


# Dialling (rebinding, the checked address is the one dialled): tests/integration/test_webhook_client.py


@pytest.mark.parametrize("url", ["http://", "http:///nohost", "http://169.254.169.254/latest/meta-data/",
                                 "http://[fd00:ec2::254]/", "http://10.0.0.5/hook", "http://metadata.google.internal/",
                                 "gopher://127.0.0.1/"])
async def test_the_api_refuses_such_urls_on_create_and_update(hub_client: HubClient, url: str) -> None:
    c = hub_client.client
    r = await c.post("/instances", json={"name": "ssrf", "webhook": {"url": url}})
    assert r.status_code == 400, r.text
    assert "webhook.url" in r.json()["error"]
    assert (await c.get("/instances/ssrf")).status_code == 404  # nothing half-written
    ok = await c.post("/instances", json={"name": "ssrf2", "webhook": {"url": "http://127.0.0.1:9/hook"}})
    assert ok.status_code in (200, 201), ok.text
    r = await c.put("/instances/ssrf2", json={"webhook": {"url": url}})
    assert r.status_code == 400 and "webhook.url" in r.json()["error"]


async def test_credentials_in_a_webhook_url_are_never_shown(hub_client: HubClient) -> None:
    c = hub_client.client
    url = "http://hookuser:Pw-Sentinel-7781@127.0.0.1:9/hook"
    r = await c.post("/instances", json={"name": "creds", "webhook": {"url": url}})
    assert r.status_code in (200, 201), r.text
    iid = r.json()["instance"]["id"]
    seen = [r.text, (await c.get(f"/instances/{iid}")).text, (await c.get("/instances")).text,
            (await c.get(f"/instances/{iid}/status")).text]
    for text in seen:
        assert "Pw-Sentinel-7781" not in text and "hookuser" not in text
    assert "***@127.0.0.1:9/hook" in seen[3]
    rt = hub_client.hub.instances[iid]
    assert rt.record.webhook_url == url  # kept for delivery (Basic auth), only hidden when shown
