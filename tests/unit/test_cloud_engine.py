"""The cloud engine's lifecycle and sends, with Graph answered by an in-process mock transport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support import cloud_payloads as fx
from tests.support.engine_events import Recorder
from wahub.domain.errors import DisconnectedError, EngineError, PermanentSendError, TransientSendError
from wahub.engines import base
from wahub.engines.cloud import errors
from wahub.engines.cloud.account import CloudAccount
from wahub.engines.cloud.engine import CloudEngine, CloudEngineFactory, CloudOptions
from wahub.engines.cloud.polls import PollTemplate

NOW = 1_767_225_600_000
CHAT = f"{fx.CUSTOMER}@c.us"
ACCOUNT = CloudAccount(phone_number_id=fx.PHONE_NUMBER_ID, waba_id=fx.WABA_ID, access_token=fx.ACCESS_TOKEN,
                       app_secret=fx.APP_SECRET, verify_token=fx.VERIFY_TOKEN)


class Clock:
    def now_ms(self) -> int:
        return NOW

    async def sleep(self, ms: float) -> None:
        raise AssertionError("the cloud engine never sleeps")


def graph_error(code: int, message: str, status: int = 400, subcode: int | None = None) -> httpx.Response:
    err: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Az1"}
    if subcode:
        err["error_subcode"] = subcode
    return httpx.Response(status, json={"error": err})


PHONE = httpx.Response(200, json={"id": fx.PHONE_NUMBER_ID, "display_phone_number": "+20 100 555 0000",
                                  "verified_name": "Shop"})
SENT = httpx.Response(200, json={"messaging_product": "whatsapp", "contacts": [{"input": fx.CUSTOMER,
                                 "wa_id": fx.CUSTOMER}], "messages": [{"id": "wamid.SENT1"}]})


class Graph:
    """Answers GET (credentials check) and POST (send) with queued responses; records every request."""

    def __init__(self, check: httpx.Response | Exception = PHONE,
                 sends: list[httpx.Response | Exception] | None = None) -> None:
        self.check, self.sends = check, list(sends or [])
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.check if request.method == "GET" else (self.sends.pop(0) if self.sends else SENT)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


def make(graph: Graph, *, account: CloudAccount | None = ACCOUNT,
         last_inbound: int | None | Callable[[], int | None] = None,
         track_window: bool = False) -> tuple[CloudEngine, Recorder]:
    async def credentials(instance_id: str) -> CloudAccount | None:
        assert instance_id == "shop"
        return account

    async def inbound(instance_id: str, chat_id: str) -> int | None:
        return last_inbound() if callable(last_inbound) else last_inbound

    sink = Recorder()
    options = CloudOptions(base_url="http://graph.test", transport=httpx.MockTransport(graph))
    factory = CloudEngineFactory(credentials, clock=Clock(), last_inbound=inbound if track_window else None,
                                 options=options)
    engine = factory.create("shop", sink)
    assert factory.name == "cloud" and engine.new_message_id() is None
    assert not engine.capabilities.chosen_message_ids
    return engine, sink


async def test_start_checks_the_credentials_with_one_graph_call_and_reports_ready() -> None:
    graph = Graph()
    engine, sink = make(graph)
    await engine.start()
    assert sink.events == [base.Ready(phone="201005550000", push_name="Shop", jid="201005550000@c.us")]
    [req] = graph.requests
    assert req.method == "GET" and req.url.path == f"/v23.0/{fx.PHONE_NUMBER_ID}"
    assert req.headers["authorization"] == f"Bearer {fx.ACCESS_TOKEN}"
    assert await engine.probe_ready()
    await engine.stop()


async def test_expired_token_is_a_terminal_logout_naming_the_graph_code_and_message() -> None:
    engine, sink = make(Graph(check=graph_error(190, "Error validating access token: Session has expired",
                                                status=401, subcode=463)))
    await engine.start()
    assert sink.events == [base.LoggedOut(
        "token_expired (Graph 190/463): Error validating access token: Session has expired")]


async def test_unreachable_graph_is_a_failed_connect_attempt_and_a_server_error_a_disconnect() -> None:
    engine, sink = make(Graph(check=httpx.ConnectError("[Errno 111] Connection refused")))
    await engine.start()
    assert sink.events == [base.ConnectFailed("refused", "cannot connect to the Graph API: [Errno 111] "
                                                         "Connection refused")]
    engine, sink = make(Graph(check=graph_error(2, "Service temporarily unavailable", status=503)))
    await engine.start()
    assert sink.events == [base.Disconnected("graph_unavailable (Graph 2): Service temporarily unavailable")]


async def test_an_instance_without_credentials_is_logged_out() -> None:
    engine, sink = make(Graph(), account=None)
    await engine.start()
    assert [type(e) for e in sink.events] == [base.LoggedOut]
    with pytest.raises(DisconnectedError):
        await engine.send_text(CHAT, "hi")


async def test_text_and_poll_go_to_the_phone_number_s_messages_edge() -> None:
    graph = Graph()
    engine, _ = make(graph)
    await engine.start()
    assert (await engine.send_text(CHAT, "hello")).message_id == "wamid.SENT1"
    result = await engine.send_poll(CHAT, "Confirm order #1001?", ["Confirm", "Cancel"], False)
    assert result == base.SendResult(message_id="wamid.SENT1", timestamp=NOW)
    text, poll = graph.bodies()
    assert text == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": fx.CUSTOMER,
                    "type": "text", "text": {"body": "hello", "preview_url": False}}
    assert poll["type"] == "interactive" and poll["interactive"]["type"] == "button"
    assert graph.requests[-1].url.path == f"/v23.0/{fx.PHONE_NUMBER_ID}/messages"


async def test_per_send_template_overrides_the_instance_default() -> None:
    graph = Graph()
    account = CloudAccount(**{**ACCOUNT.__dict__, "poll_template": PollTemplate("default_tpl", "en")})
    engine, _ = make(graph, account=account)
    await engine.start()
    await engine.send_poll(CHAT, "c", ["Yes", "No"], False)
    await engine.send_poll(CHAT, "c", ["Yes", "No"], False, template=PollTemplate("order_v2", "ar", ("#7",)))
    assert [b["template"]["name"] for b in graph.bodies()] == ["default_tpl", "order_v2"]


async def test_closed_service_window_without_template_fails_before_any_graph_call() -> None:
    graph = Graph()
    engine, _ = make(graph, last_inbound=NOW - 25 * 3600 * 1000, track_window=True)
    await engine.start()
    with pytest.raises(errors.OutsideServiceWindow):
        await engine.send_poll(CHAT, "Confirm?", ["Yes", "No"], False)
    with pytest.raises(errors.OutsideServiceWindow):
        await engine.send_text(CHAT, "hello")
    assert graph.bodies() == []
    await engine.send_poll(CHAT, "Confirm?", ["Yes", "No"], False, template=PollTemplate("order", "en"))
    assert [b["type"] for b in graph.bodies()] == ["template"]


@pytest.mark.parametrize(("answer", "cls", "reason"), [
    (graph_error(131056, "(Business Account, Consumer Account) pair rate limit hit"), TransientSendError,
     "pair_rate_limited"),
    (graph_error(130429, "Rate limit hit", status=429), TransientSendError, "rate_limited"),
    (graph_error(131047, "Re-engagement message"), errors.OutsideServiceWindow, "outside_service_window"),
    (graph_error(131026, "Message Undeliverable"), PermanentSendError, "undeliverable"),
])
async def test_graph_send_errors_map_onto_the_outbox_taxonomy(answer: httpx.Response, cls: type[Exception],
                                                              reason: str) -> None:
    engine, sink = make(Graph(sends=[answer]))
    await engine.start()
    with pytest.raises(cls) as caught:
        await engine.send_text(CHAT, "hi")
    assert getattr(caught.value, "reason", None) == reason
    assert [type(e) for e in sink.events] == [base.Ready]


async def test_token_expiring_mid_send_requeues_the_item_and_reports_the_terminal_state() -> None:
    engine, sink = make(Graph(sends=[graph_error(190, "Session has expired", status=401, subcode=463)]))
    await engine.start()
    with pytest.raises(DisconnectedError) as caught:
        await engine.send_text(CHAT, "hi")
    assert caught.value.reason == "token_expired" and not caught.value.maybe_sent
    event = await sink.wait_for(base.LoggedOut, timeout_s=5)
    assert event.reason.startswith("token_expired (Graph 190/463)")
    await engine.stop()


async def test_a_read_timeout_after_the_request_may_have_sent_the_message() -> None:
    engine, _ = make(Graph(sends=[httpx.ReadTimeout("timed out")]))
    await engine.start()
    with pytest.raises(TransientSendError) as caught:
        await engine.send_text(CHAT, "hi")
    assert caught.value.maybe_sent and caught.value.reason == "graph_timeout"


async def test_groups_and_number_checks_are_refused_clearly() -> None:
    engine, _ = make(Graph())
    await engine.start()
    with pytest.raises(PermanentSendError) as caught:
        await engine.send_text("120363000000000000@g.us", "hi")
    assert caught.value.reason == "invalid_recipient"
    with pytest.raises(EngineError):
        await engine.is_registered(CHAT)


async def test_secrets_never_reach_the_logs() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        engine, _ = make(Graph(check=graph_error(190, "Session has expired", status=401)))
        await engine.start()
        engine, _ = make(Graph(sends=[graph_error(131056, "pair rate limit hit")]))
        await engine.start()
        with pytest.raises(TransientSendError):
            await engine.send_text(CHAT, "secret order details")
    text = repr(logs)
    assert logs and fx.ACCESS_TOKEN not in text and fx.APP_SECRET not in text and "secret order details" not in text
