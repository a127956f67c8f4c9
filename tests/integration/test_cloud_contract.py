"""Contract: every request the cloud engine makes is valid for Meta's own OpenAPI description.

Stoplight Prism serves Meta's Cloud API v23.0 file on loopback and validates each request (a
request that breaks the spec gets a 422 with the violations, not Meta's example answer); each
body is also validated here against the spec's schema for its message type. Webhook fixtures are
validated against the spec's ``WebhookPayload`` schema, so the parser is tested on Meta's shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import cloud_payloads as fx
from tests.support import cloud_spec
from tests.support.engine_events import Recorder
from wahub.domain.errors import PermanentSendError
from wahub.engines import base
from wahub.engines.cloud import graph, webhook
from wahub.engines.cloud.account import CloudAccount
from wahub.engines.cloud.engine import CloudEngine, CloudOptions
from wahub.engines.cloud.polls import PollTemplate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHAT = f"{fx.CUSTOMER}@c.us"
ACCOUNT = CloudAccount(phone_number_id=fx.PHONE_NUMBER_ID, waba_id=fx.WABA_ID, access_token=fx.ACCESS_TOKEN,
                       app_secret=fx.APP_SECRET, verify_token=fx.VERIFY_TOKEN)
BRANCH = {"text": "TextMessage", "interactive": "InteractiveMessage", "template": "TemplateMessage"}


class Clock:
    def now_ms(self) -> int:
        return 1_767_225_600_000

    async def sleep(self, ms: float) -> None:
        raise AssertionError("not used")


class Recording(httpx.AsyncBaseTransport):
    """The real HTTP transport to Prism, keeping each request body and Prism's answer."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, bytes, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        self.exchanges.append((request, body, httpx.Response(response.status_code, content=content)))
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def prism_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with cloud_spec.prism(Path(tmp_path_factory.mktemp("prism")) / "prism.log") as url:
        yield url


async def engine_for(url: str, account: CloudAccount = ACCOUNT) -> tuple[CloudEngine, Recorder, Recording]:
    async def credentials(_instance_id: str) -> CloudAccount:
        return account

    transport, sink = Recording(), Recorder()
    engine = CloudEngine("shop", sink, credentials=credentials, clock=Clock(),
                         options=CloudOptions(base_url=url, transport=transport))
    await engine.start()
    return engine, sink, transport


def own_violations(body: dict[str, Any], **relax: Any) -> list[str]:
    return cloud_spec.violations(cloud_spec.schema(BRANCH[body["type"]], **relax), body)


async def test_credentials_check_text_buttons_and_lists_are_valid_requests(prism_url: str) -> None:
    engine, sink, rec = await engine_for(prism_url)
    assert [type(e) for e in sink.events] == [base.Ready]
    await engine.send_text(CHAT, "Your order #1001 is on its way")
    await engine.send_poll(CHAT, "Confirm order #1001?", ["Confirm", "Cancel"], False)
    await engine.send_poll(CHAT, "Confirm order #1001?", ["تأكيد", "إلغاء", "تعديل العنوان"], False)
    await engine.send_poll(CHAT, "Pick a delivery slot", ["9-12", "12-15", "15-18", "18-21"], False)
    await engine.send_poll(CHAT, "Confirm?", ["Confirm and deliver tomorrow morning", "Cancel the order"], True)
    await engine.stop()
    await rec.aclose()
    assert [(r.method, resp.status_code) for r, _, resp in rec.exchanges] == [("GET", 200)] + [("POST", 200)] * 5, \
        [resp.text[:600] for _, _, resp in rec.exchanges if resp.status_code != 200]
    for request, body, _ in rec.exchanges[1:]:
        assert request.url.path == f"/v23.0/{fx.PHONE_NUMBER_ID}/messages"
        assert request.headers["content-type"] == "application/json"
        assert own_violations(httpx.Response(200, content=body).json()) == []


async def test_the_mock_refuses_what_meta_s_spec_forbids(prism_url: str) -> None:
    """The positive test above means something: Prism answers 422 to a request the spec forbids."""
    client = graph.GraphClient(fx.ACCESS_TOKEN, base_url=prism_url)
    try:
        with pytest.raises(Exception) as caught:
            await client.send(fx.PHONE_NUMBER_ID, fx.CUSTOMER, {"type": "interactive", "interactive": {
                "type": "button", "body": {"text": "Confirm?"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]}}})
    finally:
        await client.aclose()
    assert getattr(caught.value, "http_status", None) == 422
    long_title = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": fx.CUSTOMER,
                  "type": "interactive", "interactive": {"type": "button", "body": {"text": "Confirm?"}, "action": {
                      "buttons": [{"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]}}}
    assert own_violations(long_title) != []  # the schema check here refuses it too
    long_title["interactive"]["action"]["buttons"][0]["reply"]["title"] = "x" * 20
    assert own_violations(long_title) == []


async def test_template_poll_matches_the_spec_except_its_self_contradicting_button_index(prism_url: str) -> None:
    """Meta's file forbids index "0" (pattern ^[2-6, 11-14]$) while its own example and the live API use it.

    wa-hub sends Graph's 0-based indexes; this test pins that the only difference from the file is
    that pattern, so any other drift in the template body fails here.
    """
    engine, _, rec = await engine_for(prism_url)
    template = PollTemplate("order_confirmation", "ar", ("#1001", "350 EGP"))
    with pytest.raises(PermanentSendError):
        await engine.send_poll(CHAT, "Confirm order #1001?", ["تأكيد", "إلغاء"], False, template=template)
    await engine.stop()
    await rec.aclose()
    _, raw, answer = rec.exchanges[-1]
    body = httpx.Response(200, content=raw).json()
    assert answer.status_code == 422
    template_issues = [v for v in answer.json()["validation"] if v["location"][:2] == ["body", "template"]]
    assert template_issues and {(tuple(v["location"]), v["code"]) for v in template_issues} == {
        (("body", "template", "components", "1", "index"), "pattern")}
    assert own_violations(body) == [f"template/components/1/index: '0' does not match "
                                    f"'{cloud_spec.TEMPLATE_INDEX_PATTERN}'"]
    assert own_violations(body, index_pattern="^[0-9]$") == []


def _paths(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return {p for k, v in node.items() for p in {f"{prefix}/{k}"} | _paths(v, f"{prefix}/{k}")}
    if isinstance(node, list):
        return {p for v in node for p in _paths(v, f"{prefix}/*")}
    return set()


MESSAGE_EXAMPLES = {"text": "Text Message", "button": "Interactive Button Reply Message",
                    "list": "Interactive List Reply Message", "template": "Button Message"}
FIXTURES = {"text": fx.text(), "button": fx.button_reply("Confirm"), "list": fx.list_reply("Confirm"),
            "template": fx.template_quick_reply("Confirm")}


def _example(name: str) -> dict[str, Any]:
    examples = cloud_spec.spec()["paths"]["/whatsapp/webhooks"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]
    value = examples[name]["value"]
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("kind", sorted(MESSAGE_EXAMPLES))
def test_inbound_fixtures_use_only_the_fields_of_meta_s_own_examples(kind: str) -> None:
    """Meta's inbound-message schema reuses the *outgoing* message schema (it requires ``to``), so its
    own examples fail it; the fixtures are held to the examples' fields instead."""
    example = _example(MESSAGE_EXAMPLES[kind])
    assert _paths(FIXTURES[kind]) <= _paths(example)


def test_the_parser_reads_meta_s_own_examples() -> None:
    [text] = webhook.parse(_example("Text Message"), phone_number_id="106540352242922")
    assert isinstance(text, base.InboundMessage) and text.text == "Does it come in another color?"
    [reply] = webhook.parse(_example("Interactive Button Reply Message"), phone_number_id="106540352242922")
    assert isinstance(reply, base.InboundMessage) and reply.text == "Cancel"  # not a wa-hub poll: a message
    [quick] = webhook.parse(_example("Button Message"), phone_number_id="106540352242922")
    assert isinstance(quick, base.InboundMessage) and quick.text == "Unsubscribe"


@pytest.mark.parametrize("payload", [fx.statuses("sent", "delivered", "read"), fx.failed_outside_window()],
                         ids=["statuses", "failed"])
def test_status_fixtures_validate_against_meta_s_status_schema(payload: dict[str, Any]) -> None:
    value = payload["entry"][0]["changes"][0]["value"]
    assert cloud_spec.violations(cloud_spec.schema("StatusMessageValue"), value) == []


async def test_poll_to_button_reply_round_trip_gives_the_vote_on_the_sent_message(prism_url: str) -> None:
    """The id the engine put on the button comes back in Meta's reply and resolves to the option text."""
    engine, _, rec = await engine_for(prism_url)
    sent = await engine.send_poll(CHAT, "Confirm order #1001?", ["Confirm", "Cancel"], False)
    await engine.stop()
    await rec.aclose()
    body = httpx.Response(200, content=rec.exchanges[-1][1]).json()
    cancel = body["interactive"]["action"]["buttons"][1]["reply"]
    reply = fx.button_reply("unused", reply_to=sent.message_id)
    reply["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"]["button_reply"] = cancel
    assert webhook.parse(reply, phone_number_id=fx.PHONE_NUMBER_ID) == [base.PollVote(
        poll_message_id=sent.message_id, chat_id=CHAT, voter=CHAT, timestamp=fx.TS * 1000,
        selected_options=("Cancel",))]
