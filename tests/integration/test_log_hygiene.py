"""Logs are structured events and never carry the API key, a webhook secret or a message body at info level.

The hub runs in process with the real logging configuration writing to a buffer; the scenario touches
every path that handles a secret or a body: API calls with right and wrong keys, dashboard logins,
texts, polls, an inbound message, a vote, a failed send and signed webhook deliveries.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from tests.conftest import HubClient
from tests.support.logs import restored_logging
from tests.support.polling import until
from tests.support.receiver import Receiver
from tests.support.server import API_KEY
from wahub import observability

HUB_SECRET = "whsec-hub-wide-5f1c2d"
INSTANCE_SECRET = "whsec-instance-9a8b7c"
WRONG_KEY = "typo-of-the-api-key-01"
BODY = "Body-7731: your order of 3 mangoes ships tomorrow"
CAPTION = "Caption-4410 confirm order 1001?"
OPTION = "Option-Yes-2291"
INBOUND = "Inbound-5512 please call me back"
SECRETS_AND_BODIES = (API_KEY, WRONG_KEY, HUB_SECRET, INSTANCE_SECRET, BODY, CAPTION, OPTION, INBOUND)


class _Stream(io.StringIO):
    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def log_output() -> Iterator[Callable[..., _Stream]]:
    """Configure the real logging into a buffer; restore the previous configuration afterwards."""
    def configure(fmt: str = "json", tty: bool = False, **kw: Any) -> _Stream:
        stream = _Stream(tty)
        observability.configure_logging("info", fmt, stream=stream, **kw)
        return stream

    with restored_logging():
        yield configure




@pytest.mark.hub_settings(webhook_secret=HUB_SECRET, send_interval_ms=0, retry_base_backoff_ms=50,
                          retry_max_backoff_ms=100)
@pytest.mark.timeout(60)
async def test_no_secret_or_body_in_info_logs(hub_client: HubClient, log_output: Any) -> None:
    out = log_output()
    c = hub_client.client
    with Receiver() as receiver:
        r = await c.post("/instances", json={"name": "hygiene", "webhook": {"url": receiver.url,
                                                                           "secret": INSTANCE_SECRET}})
        iid = r.json()["instance"]["id"]
        other = (await c.post("/instances", json={"name": "hygiene-2", "webhook": {"url": receiver.url}})).json()
        assert (await c.post(f"/sandbox/instances/{iid}/scan", json={})).status_code == 200
        await until(lambda: _ready(hub_client, iid))

        # Dashboard logins: a wrong key (a typo of the real one is sensitive too), then the right one.
        assert (await c.post("/dashboard/login", data={"api_key": WRONG_KEY})).status_code == 401
        assert (await c.post("/dashboard/login", data={"api_key": API_KEY})).status_code == 303
        assert (await c.get("/instances", headers={"authorization": f"Bearer {WRONG_KEY}"})).status_code == 403

        await c.post(f"/sandbox/instances/{iid}/faults", json={"kind": "send_error", "mode": "transient"})
        await c.post(f"/sandbox/instances/{iid}/faults", json={"kind": "unregistered", "chatId": "201000000666"})
        sends = [("send-message", {"chatId": "201000000001", "message": BODY}),
                 ("send-message", {"chatId": "201000000666", "message": BODY + " (unregistered)"}),
                 ("create-poll", {"chatId": "201000000001", "caption": CAPTION, "options": [OPTION, "No"]})]
        for action, body in sends:
            r = await c.post(f"/instances/{iid}/client/action/{action}", json=body)
            assert r.status_code == 202, r.text
        # The same body to an instance that is not linked stays queued (logged as enqueued only).
        await c.post(f"/instances/{other['instance']['id']}/client/action/send-message",
                     json={"chatId": "201000000001", "message": BODY})

        async def settled() -> bool:
            st = (await c.get(f"/instances/{iid}/status")).json()
            return st["queue"]["byStatus"].get("sent", 0) == 2 and st["queue"]["byStatus"].get("failed", 0) == 1

        await until(settled)
        poll_item = (await c.get(f"/instances/{iid}/outbox", params={"status": "sent"})).json()["items"]
        poll_mid = next(i["messageId"] for i in poll_item if i["kind"] == "poll")
        await c.post(f"/sandbox/instances/{iid}/messages", json={"from": "201000000001", "text": INBOUND})
        await c.post(f"/sandbox/instances/{iid}/votes", json={"pollMessageId": poll_mid, "voter": "201000000001",
                                                              "selectedOptions": [OPTION]})

        async def delivered() -> bool:  # the receiver runs in a thread: poll it without blocking the loop
            return {"message", "vote_update", "message_sent", "message_failed"} <= {
                e["event"] for e in receiver.events()}

        await until(delivered)

    text = out.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) > 12  # the run was logged (one info line per send: its outcome)
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    for needle in SECRETS_AND_BODIES:
        leaking = [line for line in lines if needle in line]
        assert not leaking, f"{needle!r} appears in the logs: {leaking[:3]}"
    assert not re.search(r"Bearer\s+\S", text)

    # Events carry their context fields.
    enqueued = [e for e in events if e["event"] == "enqueued"]
    assert enqueued and all(e.get("instance_id") and e.get("queue_id") and e.get("request_id") for e in enqueued)
    sent = [e for e in events if e["event"] == "sent"]
    assert len(sent) == 2 and all(e["instance_id"] == iid and e.get("queue_id") for e in sent)
    assert all(e.get("level") and e.get("timestamp") for e in events)


async def _ready(hc: HubClient, iid: str) -> bool:
    return bool((await hc.client.get(f"/instances/{iid}")).json()["instance"]["state"] == "ready")


def test_console_on_a_terminal_json_otherwise(log_output: Any) -> None:
    log = structlog.get_logger("wahub.test")
    tty = log_output(fmt="auto", tty=True)
    log.info("queue_drained", instance_id="shop-1")
    line = tty.getvalue().strip()
    assert "queue_drained" in line and "shop-1" in line
    with pytest.raises(ValueError):
        json.loads(line)

    pipe = log_output(fmt="auto", tty=False)
    log.info("queue_drained", instance_id="shop-1")
    assert json.loads(pipe.getvalue())["instance_id"] == "shop-1"


def test_redaction_by_field_and_by_value(log_output: Any) -> None:
    out = log_output(secrets=(API_KEY, HUB_SECRET))
    log = structlog.get_logger("wahub.test")
    log.info("sending", message=BODY, caption=CAPTION, webhook_secret=HUB_SECRET, queue_id="q1")
    log.warning("upstream_refused", error=f"401 for https://hook.example/?token={HUB_SECRET}&k={API_KEY}")
    logging.getLogger("uvicorn.error").warning("client sent %s", API_KEY)  # a library's record
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["message"] == lines[0]["caption"] == lines[0]["webhook_secret"] == "[redacted]"
    assert lines[0]["queue_id"] == "q1"
    assert HUB_SECRET not in lines[1]["error"] and API_KEY not in lines[1]["error"]
    assert lines[2]["logger"] == "uvicorn.error" and API_KEY not in lines[2]["event"]
    assert not any(s in out.getvalue() for s in (API_KEY, HUB_SECRET, BODY, CAPTION))


def test_debug_lines_are_dropped_at_info_level(log_output: Any) -> None:
    out = log_output()
    structlog.get_logger("wahub.test").debug("send_payload", message=BODY)
    assert out.getvalue() == ""
