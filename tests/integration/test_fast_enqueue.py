"""``send-message`` and ``create-poll`` answered ahead of FastAPI's router give the routes' answers, byte for byte.

Two hubs in the same state, one app with the fast path (the default) and one without it, get the same
requests in the same order; every answer (status, headers, body) must be the same, apart from the
request id and the random ``queueId``. The cases cover each answer the routes give: queued, replay,
key conflicts, every kind of bad input (FastAPI's own wording for bodies it cannot take), unknown
instance, full queue, body limit, auth, the WaAPI envelope, the query's ``retry``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from starlette.middleware.errors import ServerErrorMiddleware

from tests.conftest import make_settings
from tests.support.polling import until
from tests.support.server import API_KEY
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub
from wahub.web.app import create_app

SEND = "/instances/{}/client/action/send-message"
POLL = "/instances/{}/client/action/create-poll"
JSON = {"content-type": "application/json"}
_QUEUE_ID = re.compile(rb'"queueId":"[0-9a-f]{32}"')

# (path template, instance, body bytes, headers, query): sent in this order to both hubs.
CASES: list[tuple[str, str, bytes, dict[str, str], str]] = [
    (SEND, "shop", b'{"chatId":"201000000001","message":"hi"}', {**JSON, "Idempotency-Key": "k1"}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"hi"}', {**JSON, "Idempotency-Key": "k1"}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"other"}', {**JSON, "Idempotency-Key": "k1"}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"hi","idempotencyKey":"k2"}', {**JSON, "Idempotency-Key": "k3"},
     ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"body key","idempotencyKey":"k4"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"derived"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"derived"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"extra","unknown":[1,{"a":null}]}', JSON, ""),
    (SEND, "shop", b'{"chatId":201000000002,"message":"number"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001"}', JSON, ""),
    (SEND, "shop", b'{"message":"no chat"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":42}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"   "}', JSON, ""),
    (SEND, "shop", b'{"chatId":"not a number","message":"hi"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"\\ud800"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"nul\\u0000"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"x","extra":{"deep":["\\ud800"]}}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"retry","retry":"maybe"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"q"}', {**JSON, "Idempotency-Key": "k5"}, "retry=true"),
    (SEND, "shop", b'{"chatId":"201000000001","message":"q"}', {**JSON, "Idempotency-Key": ""}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"q"}', {**JSON, "Idempotency-Key": "auto:x"}, ""),
    (SEND, "shop", b'{"chatId": "201000000001", "message": "malformed"', JSON, ""),
    (SEND, "shop", b'["chatId"]', JSON, ""),
    (SEND, "shop", b'"text"', JSON, ""),
    (SEND, "shop", b"", JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"plain"}', {"content-type": "text/plain"}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"no type"}', {}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"charset"}',
     {"content-type": "application/json; charset=utf-8"}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"vendor"}', {"content-type": "application/vnd.x+json"}, ""),
    (SEND, "nobody", b'{"chatId":"201000000001","message":"hi"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"' + b"x" * 70_000 + b'"}', JSON, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"no key"}', {**JSON, "authorization": ""}, ""),
    (SEND, "shop", b'{"chatId":"201000000001","message":"wrong key"}', {**JSON, "authorization": "Bearer nope"}, ""),
    (SEND + "/", "shop", b'{"chatId":"201000000001","message":"slash"}', JSON, ""),
    (POLL, "shop", b'{"chatId":"201000000001","caption":"Pick","options":["a","b"]}', JSON, ""),
    (POLL, "shop", b'{"chatId":"201000000001","caption":"Pick","options":["a","b"]}', JSON, ""),
    (POLL, "shop", b'{"chatId":"201000000001","caption":"Pick","options":["a"]}', JSON, ""),
    (POLL, "shop", b'{"chatId":"201000000001","caption":"Pick","options":["a","a"]}', JSON, ""),
    (POLL, "shop", b'{"chatId":"201000000001","options":["a","b"]}', JSON, ""),
    (POLL, "shop", b"{", JSON, ""),
]


@asynccontextmanager
async def served(tmp_path: Path, *, fast: bool, **overrides: Any) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    """A hub with the (unlinked) instance ``shop`` and a client of its app."""
    settings = make_settings(tmp_path, max_body_bytes=65_536, **overrides)
    hub = build_hub(settings, rng=random.Random(7))
    await hub.start()
    try:
        await hub.create_instance("shop", None, None)
        async def showing_qr() -> bool:
            rt = hub.get("shop")
            return rt.state.value == "connecting" and rt.qr is not None

        await until(showing_qr)
        app = create_app(hub, manage_hub=False, fast_enqueue=fast)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                                     headers={"authorization": f"Bearer {API_KEY}"}) as client:
            yield hub, client
    finally:
        await hub.stop()


async def answers(client: httpx.AsyncClient, cases: list[tuple[str, str, bytes, dict[str, str], str]]) -> list[
        tuple[int, list[tuple[str, str]], bytes]]:
    """Each case's status, headers (without the request id) and body (``queueId`` blanked)."""
    got = []
    for path, instance, body, headers, query in cases:
        r = await client.post(path.format(instance) + (f"?{query}" if query else ""), content=body, headers=headers)
        kept = [(k, v) for k, v in r.headers.multi_items() if k != "x-request-id"]
        got.append((r.status_code, kept, _QUEUE_ID.sub(b'"queueId":"-"', r.content)))
    return got


@pytest.mark.parametrize("overrides", [{}, {"waapi_envelope": True}], ids=["old-hub shapes", "WAAPI_ENVELOPE"])
@pytest.mark.timeout(60)
async def test_the_fast_path_answers_every_case_as_the_routes_do(tmp_path: Path, overrides: dict[str, Any]) -> None:
    async with served(tmp_path / "fast", fast=True, max_queue_size=1_000, **overrides) as (_, fast), \
            served(tmp_path / "routes", fast=False, max_queue_size=1_000, **overrides) as (_, routes):
        got_fast, got_routes = await answers(fast, CASES), await answers(routes, CASES)
    statuses = [status for status, _, _ in got_routes]
    assert {202, 400, 401, 403, 404, 409, 413} <= set(statuses), statuses  # the cases reach every answer
    for case, (mine, theirs) in enumerate(zip(got_fast, got_routes, strict=True)):
        assert mine == theirs, (case, CASES[case][2][:80], mine, theirs)


@pytest.mark.timeout(60)
async def test_a_full_queue_and_a_stopping_hub_are_answered_as_the_routes_do(tmp_path: Path) -> None:
    body = b'{"chatId":"201000000001","message":"%d"}'
    results = []
    for fast in (True, False):
        async with served(tmp_path / str(fast), fast=fast, max_queue_size=1) as (hub, client):
            first = await client.post(SEND.format("shop"), content=body % 1, headers=JSON)
            full = await client.post(SEND.format("shop"), content=body % 2, headers=JSON)
            hub.begin_shutdown()
            stopping = await client.post(SEND.format("shop"), content=body % 3, headers=JSON)
            results.append([(r.status_code, r.headers.get("retry-after"), _QUEUE_ID.sub(b"-", r.content))
                            for r in (first, full, stopping)])
    assert [status for status, _, _ in results[0]] == [202, 429, 503]
    assert results[0] == results[1]


@pytest.mark.timeout(60)
async def test_enqueues_run_no_fastapi_dependency_solving_and_keep_their_route_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    solved: list[str] = []
    original: Callable[..., Any] = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    async with served(tmp_path, fast=True) as (_, client):
        sent = await client.post(SEND.format("shop"), json={"chatId": "201000000001", "message": "hi"})
        poll = await client.post(POLL.format("shop"), json={"chatId": "201000000001", "caption": "Pick",
                                                            "options": ["a", "b"]})
        assert (sent.status_code, poll.status_code) == (202, 202)
        assert solved == []  # neither went through FastAPI's router
        assert (await client.get("/instances/shop")).status_code == 200
        assert solved == ["/instances/shop"]  # the other routes still do
        metrics = (await client.get("/metrics")).text
    for template in ("send-message", "create-poll"):
        line = next(ln for ln in metrics.splitlines() if ln.startswith("wahub_http_requests_total")
                    and f'route="/instances/{{instance_id}}/client/action/{template}"' in ln)
        assert 'status="202"' in line and line.endswith(" 1.0")
    assert json.loads(sent.content)["queued"] is True


@pytest.mark.timeout(60)
async def test_enqueues_skip_fastapi_s_middleware_stack_unless_its_telemetry_is_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stacked: list[str] = []
    original: Callable[..., Any] = ServerErrorMiddleware.__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        stacked.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(ServerErrorMiddleware, "__call__", counting)
    body = {"chatId": "201000000001", "message": "hi"}
    async with served(tmp_path, fast=True) as (_, client):
        first = await client.post(SEND.format("shop"), json=body, headers={"x-request-id": "mine"})
        assert (first.status_code, first.headers.get_list("x-request-id")) == (202, ["mine"])
        assert stacked == []
        declined = await client.post(SEND.format("shop"), content=b"[1]", headers=JSON)  # FastAPI words this one
        assert declined.status_code == 400 and len(declined.headers.get_list("x-request-id")) == 1
        assert stacked == [SEND.format("shop")]
        app = client._transport.app  # type: ignore[attr-defined]
        monkeypatch.setattr(app, "_telemetry_on", lambda: True)  # an OpenTelemetry provider is configured
        stacked.clear()
        again = await client.post(SEND.format("shop"), json={**body, "message": "again"})
        assert again.status_code == 202 and len(again.headers.get_list("x-request-id")) == 1
        assert stacked == [SEND.format("shop")]  # through the whole stack (the fast path inside it answers)


@pytest.mark.timeout(60)
async def test_an_unexpected_error_is_answered_500_as_the_routes_do_and_raised_to_the_server(
        tmp_path: Path) -> None:
    got = []
    for fast in (True, False):
        async with served(tmp_path / str(fast), fast=fast) as (hub, _):
            async def broken(*_args: Any, **_kwargs: Any) -> Any:
                raise RuntimeError("boom")

            hub.outbox.enqueue = broken  # type: ignore[method-assign]
            app = create_app(hub, manage_hub=False, fast_enqueue=fast)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub",
                                         headers={"authorization": f"Bearer {API_KEY}"}) as client:
                r = await client.post(SEND.format("shop"), json={"chatId": "201000000001", "message": "hi"})
            with pytest.raises(RuntimeError, match="boom"):
                await app(*_scope_for(SEND.format("shop")))
            got.append((r.status_code, len(r.headers.get_list("x-request-id")), r.content))
    assert got[0] == got[1] and got[0][:2] == (500, 1)


def _scope_for(path: str) -> tuple[dict[str, Any], Callable[..., Any], Callable[..., Any]]:
    body = b'{"chatId":"201000000001","message":"hi"}'
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 5000), "server": ("hub", 80),
             "headers": [(b"host", b"hub"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {API_KEY}".encode()),
                         (b"content-length", str(len(body)).encode())]}
    sent = [False]

    async def receive() -> dict[str, Any]:
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_message: Any) -> None:
        return None

    return scope, receive, send
