"""Webhook retry rules, backoff jitter and body serialisation as pure functions."""

from __future__ import annotations

import email.utils

import pytest

from wahub.domain import backoff
from wahub.domain.webhookretry import classify
from wahub.runtime import signing

NOW = 1_767_225_600_000


@pytest.mark.parametrize(("status", "kind"), [
    (200, "delivered"), (204, "delivered"), (301, "dead"), (400, "dead"), (404, "dead"),
    (410, "dead"), (422, "dead"), (401, "retry"), (403, "retry"), (408, "retry"), (429, "retry"), (500, "retry"),
    (502, "retry"), (503, "retry"),
])
def test_status_codes_map_to_delivered_retry_or_dead(status: int, kind: str) -> None:
    assert classify(status, None, None, NOW).kind == kind


def test_network_errors_are_retried() -> None:
    outcome = classify(None, "ConnectError: connection refused", None, NOW)
    assert outcome.kind == "retry" and outcome.error == "ConnectError: connection refused"


def test_a_response_timeout_is_retried_once_then_dead() -> None:
    assert classify(None, "response timeout", None, NOW, response_timeout=True).kind == "retry"
    assert classify(None, "response timeout", None, NOW, response_timeout=True,
                    previous_response_timeout=True).kind == "dead"


def test_retry_after_in_seconds_or_as_a_date_is_honoured() -> None:
    assert classify(429, None, "7", NOW).retry_after_ms == 7000
    when = email.utils.formatdate((NOW + 30_000) / 1000, usegmt=True)
    assert classify(503, None, when, NOW).retry_after_ms == 30_000
    assert classify(503, None, "soon", NOW).retry_after_ms is None


def test_backoff_grows_and_jitter_spreads_within_half_to_full_delay() -> None:
    for attempt in range(1, 8):
        d = min(300_000, 1000 * 2 ** (attempt - 1))
        low = backoff.exponential(attempt, 1000, 300_000, 0.0)
        high = backoff.exponential(attempt, 1000, 300_000, 0.999999)
        assert low == d // 2 and d // 2 <= high < d
    spread = {backoff.exponential(3, 1000, 300_000, r / 10) for r in range(10)}
    assert len(spread) == 10
    assert backoff.exponential(30, 1000, 300_000, 0.5) == 225_000


@pytest.mark.parametrize(("value", "js"), [
    (1.0, "1"), (-0.0, "0"), (0.1, "0.1"), (1e21, "1e+21"), (1.5e-7, "1.5e-7"), (1e-6, "0.000001"),
    (1.234e-5, "0.00001234"), (123e16, "1230000000000000000"),
    (-4.898619485211566e18, "-4898619485211566000"),
    (2.5e30, "2.5e+30"), (5e-324, "5e-324"),
])
def test_floats_are_written_as_javascript_writes_them(value: float, js: str) -> None:
    assert signing.js_number(value) == js


def test_body_is_compact_utf8_with_javascript_key_order_and_escapes() -> None:
    text = signing.serialize({"b": "تأكيد ✅", "10": 1, "2": [True, None], "c": "\x01\n\ud800"})
    assert text == '{"2":[true,null],"10":1,"b":"تأكيد ✅","c":"\\u0001\\n\\ud800"}'
    with pytest.raises(ValueError):
        signing.serialize({"x": float("nan")})


def test_standard_webhooks_key_is_decoded_from_a_whsec_secret() -> None:
    raw = signing.standard_signature("whsec_" + "AAEC", "evt_1", 1, b"{}")
    same = signing.standard_signature("\x00\x01\x02", "evt_1", 1, b"{}")
    assert raw == same
