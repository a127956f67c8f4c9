"""Every enqueue answered 202 survives a SIGKILL that lands in the middle of concurrent enqueues.

The real server (SQLite, linked sending sandbox instances) gets ``send-message`` calls from 16
concurrent clients, each with a new idempotency key; once ``KILL_AFTER`` have been answered it is
killed with SIGKILL while calls are still in flight. After a restart, every key that was answered 202
is sent again with the same body: the answer must be a replay of the same ``queueId`` (the item was
stored before its caller heard of it), never a new item. The answers come straight from the database
thread right after each batch's commit (``store/groupcommit.py`` ``Batch.answer``); this holds them to
that commit from outside, through the public API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.server import API_KEY, Server

pytestmark = pytest.mark.timeout(180)

INSTANCES = 4
CLIENTS = 16
KILL_AFTER = 400


def _body(key: str) -> dict[str, str]:
    return {"chatId": "201000000001@c.us", "message": f"order {key}"}


async def _enqueue_until_killed(server: Server, ids: list[str]) -> dict[str, tuple[str, str]]:
    """``key → (instance id, queueId)`` of every call answered 202 before and while the server was killed."""
    answered: dict[str, tuple[str, str]] = {}
    killed = asyncio.Event()
    counter = iter(range(10**9))

    async def client(c: httpx.AsyncClient) -> None:
        while not killed.is_set():
            n = next(counter)
            iid, key = ids[n % len(ids)], f"crash-enqueue-{n}"
            try:
                r = await c.post(f"/instances/{iid}/client/action/send-message", json=_body(key),
                                 headers={"Idempotency-Key": key})
            except httpx.HTTPError:  # the server is gone: this call's fate is unknown to its caller
                return
            assert r.status_code == 202, r.text
            answered[key] = (iid, r.json()["queueId"])
            if len(answered) >= KILL_AFTER and not killed.is_set():
                killed.set()
                server.kill()  # the other clients' calls are in flight

    async with httpx.AsyncClient(base_url=server.url, headers={"authorization": f"Bearer {API_KEY}"},
                                 timeout=30) as c:
        await asyncio.gather(*(client(c) for _ in range(CLIENTS)))
    return answered


def test_every_202_survives_a_sigkill_during_concurrent_enqueues(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"SANDBOX_AUTO_LINK_MS": "0", "MAX_QUEUE_SIZE": "100000",
                                            "LOG_LEVEL": "warning"})
    try:
        server.start()
        ids = []
        for n in range(INSTANCES):
            resp = server.client.post("/instances", json={"name": f"shop-{n}"})
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["instance"]["id"])
        server.wait_until(lambda: all(server.client.get(f"/instances/{iid}").json()["instance"]["state"] == "ready"
                                      for iid in ids))
        answered = asyncio.run(_enqueue_until_killed(server, ids))
        assert len(answered) >= KILL_AFTER
        server.start(timeout=60)
        lost = []
        for key, (iid, queue_id) in answered.items():
            r = server.client.post(f"/instances/{iid}/client/action/send-message", json=_body(key),
                                   headers={"Idempotency-Key": key})
            assert r.status_code in (200, 202), r.text
            if not (r.json()["replay"] is True and r.json()["queueId"] == queue_id):
                lost.append((key, r.json()))
        assert not lost, f"{len(lost)} of {len(answered)} answered enqueues were not stored: {lost[:3]}"
    finally:
        server.kill()
        server.client.close()
