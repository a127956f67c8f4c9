"""Webhook durability across a SIGKILL of the real ``wa-hub serve`` process (loopback receiver).

Events are stored before they are sent, so a crash between the two loses nothing: the restarted
process delivers what was pending, with the same event ids. An inbound message the engine
reports again after the restart is recognised by its message id and gives no second event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import Server


def _ready(srv: Server, iid: str) -> bool:
    return bool(srv.client.get(f"/instances/{iid}").json()["instance"]["state"] == "ready")


def _start_linked(srv: Server, name: str, url: str) -> str:
    """Create and link an instance, then attach the receiver (``authenticated``/``ready`` pass every filter)."""
    r = srv.client.post("/instances", json={"name": name})
    assert r.status_code == 200, r.text
    iid = str(r.json()["instance"]["id"])
    srv.wait_until(lambda: srv.client.post(f"/sandbox/instances/{iid}/scan").status_code == 200)
    srv.wait_until(lambda: _ready(srv, iid))
    r = srv.client.put(f"/instances/{iid}", json={"webhook": {"url": url, "events": ["message"]}})
    assert r.status_code == 200, r.text
    return iid


def _inbound(srv: Server, iid: str, text: str, message_id: str) -> None:
    r = srv.client.post(f"/sandbox/instances/{iid}/messages",
                        json={"from": "201000000009", "text": text, "messageId": message_id})
    assert r.status_code == 200, r.text


def _events(srv: Server, iid: str) -> list[dict[str, Any]]:
    """The stored ``message`` events, oldest first (``ready`` after a restart passes the filter too)."""
    r = srv.client.get(f"/instances/{iid}/webhooks/deliveries", params={"limit": 500})
    assert r.status_code == 200, r.text
    return [e for e in reversed(r.json()["events"]) if e["event"] == "message"]


def _settled_webhooks(srv: Server, iid: str) -> dict[str, Any] | None:
    status: dict[str, Any] = srv.client.get(f"/instances/{iid}/status").json()["webhook"]
    return status if status["backlog"] == 0 else None


def _messages(rx: Receiver) -> list[Received]:
    return [r for r in rx.snapshot() if r.json["event"] == "message"]


def _all_delivered(srv: Server, iid: str, n: int) -> list[dict[str, Any]] | None:
    events = _events(srv, iid)
    return events if len(events) == n and all(e["status"] == "delivered" for e in events) else None


@pytest.mark.timeout(90)
def test_events_stored_but_not_delivered_when_the_process_is_killed_arrive_after_restart(
        tmp_path: Path) -> None:
    """Report: the process died while the receiver was slow and three replies were never
    delivered. Here the first event's request hangs at the receiver, the next two wait behind it
    in the instance's lane; SIGKILL. After the restart all three arrive in order; the one that was
    in flight comes again with the same ``webhook-id`` (at-least-once)."""
    env = {"WEBHOOK_TIMEOUT_MS": "30000", "WEBHOOK_RETRY_BASE_MS": "100"}
    with Receiver() as rx:
        rx.script = [Reply(200, delay_s=20)]  # the receiver holds the first request past the kill
        srv = Server(tmp_path, env).start()
        try:
            iid = _start_linked(srv, "crash", rx.url)
            for n in (1, 2, 3):
                _inbound(srv, iid, f"reply {n}", f"3EB0CAFE00000000000{n}")
            srv.wait_until(lambda: len(rx.snapshot()) == 1)
            stored = _events(srv, iid)
            assert [(e["status"], e["attempts"]) for e in stored] == [("pending", 0)] * 3
            srv.kill()
        finally:
            srv.stop()
            srv.client.close()

        srv = Server(tmp_path, env).start()
        try:
            delivered = srv.wait_until(lambda: _all_delivered(srv, iid, 3))
        finally:
            srv.stop()
            srv.client.close()
        got = _messages(rx)
        assert [e["eventId"] for e in delivered] == [e["eventId"] for e in stored]
        ids = [e["eventId"] for e in stored]
        assert [r.headers["webhook-id"] for r in got] == [ids[0], *ids]
        assert [r.json["data"]["message"]["body"] for r in got] == ["reply 1", "reply 1", "reply 2",
                                                                    "reply 3"]
        assert got[0].body == got[1].body


@pytest.mark.timeout(90)
def test_inbound_seen_twice_and_failing_once_with_a_restart_between_gives_one_message_webhook(
        tmp_path: Path) -> None:
    """Report: after a restart the engine reported a customer's message again while its first
    webhook had failed; the app got the message twice, or never. Here the receiver answers 500
    (``Retry-After: 4``) once, the process is SIGKILLed, and after the restart the engine reports
    the same message id again: one ``message`` event, delivered once (two attempts, same id)."""
    env = {"WEBHOOK_RETRY_BASE_MS": "100", "WEBHOOK_RETRY_MAX_MS": "10000"}
    mid = "3EB0DUP0000000000001"
    with Receiver() as rx:
        rx.script = [Reply(500, headers={"Retry-After": "4"})]
        srv = Server(tmp_path, env).start()
        try:
            iid = _start_linked(srv, "twice", rx.url)
            _inbound(srv, iid, "yes, confirm", mid)
            failed = srv.wait_until(lambda: [e for e in _events(srv, iid) if e["attempts"] == 1])
            assert failed[0]["status"] == "pending" and failed[0]["lastStatusCode"] == 500
            srv.kill()
        finally:
            srv.stop()
            srv.client.close()

        srv = Server(tmp_path, env).start()
        try:
            srv.wait_until(lambda: _ready(srv, iid))
            _inbound(srv, iid, "yes, confirm", mid)
            [event] = srv.wait_until(lambda: _all_delivered(srv, iid, 1))
            status = srv.wait_until(lambda: _settled_webhooks(srv, iid))
        finally:
            srv.stop()
            srv.client.close()
        got = _messages(rx)
        assert event["eventId"] == failed[0]["eventId"] and event["attempts"] == 2
        assert [r.headers["webhook-id"] for r in got] == [event["eventId"]] * 2
        assert [r.json["data"]["message"]["id"] for r in got] == [mid, mid]
        # delivered: the message once, and the restart's `ready` (sent whatever the filter)
        assert status["delivered"] == 2 and status["backlog"] == 0 and status["dead"] == 0
