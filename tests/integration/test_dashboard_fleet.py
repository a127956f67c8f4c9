"""The dashboard's fleet list and instance page, rendered by the real app over SQLite.

* The list costs a fixed number of SQL statements per render, whatever the fleet's size (it
  used to run six per instance: 6,000 statements for 1,000 instances), and so does a metrics scrape.
* Search by name or id, filter by state, and page through the fleet.
* A webhook the API calls ``failing`` is flagged on the list and bannered on the instance page.
* ``degraded`` and ``storeFault`` in the status document render a badge and a banner, and nothing
  when they are absent.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import HubClient
from tests.support.polling import until
from tests.support.receiver import Receiver
from tests.support.server import API_KEY
from wahub.edge import presenters
from wahub.runtime.hub import Hub

pytestmark = pytest.mark.timeout(90)


async def sign_in(c: httpx.AsyncClient) -> None:
    r = await c.post("/dashboard/login", data={"api_key": API_KEY})
    assert r.status_code == 303, r.text


_COUNTING: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("counting", default=None)


@contextmanager
def statements_of_this_task(hub: Hub) -> Iterator[list[str]]:
    """SQL statements executed on behalf of the current task (a request served through ASGITransport
    runs in the caller's task; the store runs each call in a task of its own, which inherits the
    caller's context), so background loops of the hub, started in other contexts, do not count."""
    seen: list[str] = []
    token = _COUNTING.set(seen)

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counting = _COUNTING.get()
        if counting is not None:
            counting.append(statement)

    engine = hub.store.engine.sync_engine  # type: ignore[attr-defined]
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
        _COUNTING.reset(token)


async def create(c: httpx.AsyncClient, *names: str, **body: Any) -> list[str]:
    ids = []
    for name in names:
        r = await c.post("/instances", json={"name": name, **body})
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["instance"]["id"])
    return ids


async def count_statements(hc: HubClient, path: str) -> int:
    with statements_of_this_task(hc.hub) as seen:
        r = await hc.client.get(path)
        assert r.status_code == 200, r.text
    return len(seen)


async def test_list_and_metrics_cost_the_same_statements_for_3_or_60_instances(hub_client: HubClient) -> None:
    c = hub_client.client
    await sign_in(c)
    await create(c, *(f"shop-{n:03d}" for n in range(3)))
    few = [await count_statements(hub_client, p) for p in ("/dashboard", "/dashboard/partials/instances",
                                                           "/metrics")]
    await create(c, *(f"shop-{n:03d}" for n in range(3, 60)))
    many = [await count_statements(hub_client, p) for p in ("/dashboard", "/dashboard/partials/instances",
                                                            "/metrics")]
    assert many == few, (few, many)
    assert many == [1, 1, 1], many  # one aggregate statement per list page and per scrape


async def test_search_state_filter_and_pages(hub_client: HubClient) -> None:
    c = hub_client.client
    await sign_in(c)
    await create(c, *(f"shop-{n:03d}" for n in range(55)), "Cairo Store")

    def rows(html: str) -> list[str]:
        return re.findall(r'<tr data-instance="([^"]+)"', html)

    first = (await c.get("/dashboard")).text
    assert rows(first) == ["Cairo_Store"] + [f"shop-{n:03d}" for n in range(49)]
    assert "1–50 of 56" in first
    second = (await c.get("/dashboard?page=2")).text
    assert rows(second) == [f"shop-{n:03d}" for n in range(49, 55)]
    assert "51–56 of 56" in second

    found = (await c.get("/dashboard", params={"q": "SHOP-05"})).text
    assert rows(found) == [f"shop-{n:03d}" for n in range(50, 55)]
    assert rows((await c.get("/dashboard", params={"q": "cairo store"})).text) == ["Cairo_Store"]
    assert "No instance matches." in (await c.get("/dashboard", params={"q": "nothing-like-it"})).text

    # State filter: link one instance in the sandbox, then only it is "ready".
    assert (await c.post("/sandbox/instances/shop-007/scan", json={})).status_code == 200
    await until(lambda: _state(c, "shop-007", "ready"))
    ready = (await c.get("/dashboard", params={"state": "ready"})).text
    assert rows(ready) == ["shop-007"]
    # The polled partial keeps the search, filter and page.
    partial = (await c.get("/dashboard/partials/instances", params={"q": "shop", "page": "2"})).text
    assert rows(partial) == [f"shop-{n:03d}" for n in range(50, 55)]
    assert 'hx-get="/dashboard/partials/instances?q=shop&amp;page=2"' in partial


async def _state(c: httpx.AsyncClient, iid: str, state: str) -> bool:
    return bool((await c.get(f"/instances/{iid}")).json()["instance"]["state"] == state)


@pytest.mark.hub_settings(webhook_max_attempts=50, webhook_retry_base_ms=20, webhook_retry_max_ms=50)
async def test_failing_webhook_is_flagged_on_the_list_and_bannered_on_the_page(hub_client: HubClient) -> None:
    c = hub_client.client
    await sign_in(c)
    with Receiver(default_status=503) as down, Receiver() as up:
        (bad,) = await create(c, "failing-shop", webhook={"url": down.url})
        (good,) = await create(c, "healthy-shop", webhook={"url": up.url})

        async def failing() -> bool:
            return bool((await c.get(f"/instances/{bad}/status")).json()["webhook"]["failing"])

        await until(failing)
        listing = (await c.get("/dashboard")).text
        bad_row = re.search(rf'<tr data-instance="{bad}"[^>]*>', listing)
        good_row = re.search(rf'<tr data-instance="{good}"[^>]*>', listing)
        assert bad_row and 'data-webhook-failing="true"' in bad_row.group(0)
        assert good_row and "data-webhook-failing" not in good_row.group(0)
        page = (await c.get(f"/dashboard/instances/{bad}")).text
        assert 'data-testid="webhook-banner"' in page and "HTTP 503" in page
        assert 'data-testid="webhook-banner"' not in (await c.get(f"/dashboard/instances/{good}")).text


async def test_degraded_and_store_fault_render_when_the_status_has_them(hub_client: HubClient,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    c = hub_client.client
    await sign_in(c)
    (iid,) = await create(c, "zombie-shop")
    plain = (await c.get(f"/dashboard/instances/{iid}")).text
    assert 'data-testid="degraded"' not in plain and 'data-testid="store-fault"' not in plain
    assert 'data-testid="last-error"' in plain

    original = presenters.status

    async def status_with_conditions(hub: Any, instance_id: str) -> dict[str, Any]:
        doc = await original(hub, instance_id)
        return {**doc, "degraded": {"reason": "5 sends without a receipt"},
                "storeFault": {"error": "database is locked"}, "lastError": "lookup web.whatsapp.com: no such host"}

    monkeypatch.setattr(presenters, "status", status_with_conditions)
    page = (await c.get(f"/dashboard/instances/{iid}")).text
    assert 'data-testid="degraded"' in page and "5 sends without a receipt" in page
    assert 'data-testid="store-fault"' in page and "database is locked" in page
    assert "lookup web.whatsapp.com: no such host" in page
