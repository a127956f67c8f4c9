"""Graph error codes on wa-hub's taxonomy (Meta's Cloud API error-code page)."""

from __future__ import annotations

import pytest

from wahub.domain.errors import DisconnectedError, PermanentSendError, TransientSendError
from wahub.engines.cloud import errors


@pytest.mark.parametrize(("code", "cls", "reason"), [
    (131056, TransientSendError, "pair_rate_limited"),
    (130429, TransientSendError, "rate_limited"),
    (131000, TransientSendError, "graph_unavailable"),
    (131047, errors.OutsideServiceWindow, "outside_service_window"),
    (131026, PermanentSendError, "undeliverable"),
    (100, PermanentSendError, "invalid_parameter"),
    (132001, PermanentSendError, "template_error"),
    (190, DisconnectedError, "token_expired"),
    (10, DisconnectedError, "auth_failed"),
    (368, DisconnectedError, "policy_block"),
])
def test_send_errors_follow_the_graph_code(code: int, cls: type[Exception], reason: str) -> None:
    exc = errors.send_error(errors.GraphError(code, "from Graph", http_status=400))
    assert type(exc) is cls and exc.reason == reason and not exc.maybe_sent
    assert f"Graph {code}" in str(exc)


def test_unknown_codes_by_http_status() -> None:
    assert errors.classify(99999, http_status=503).kind is errors.Kind.TRANSIENT
    assert errors.classify(-1, http_status=429).kind is errors.Kind.TRANSIENT
    assert errors.classify(-1, http_status=401).kind is errors.Kind.AUTH
    assert errors.classify(99999, http_status=400) == errors.Verdict(errors.Kind.PERMANENT, "graph_99999")


def test_code_100_on_the_credentials_check_is_terminal_not_a_bad_parameter() -> None:
    assert errors.classify(100, on_check=True).kind is errors.Kind.AUTH
    reason = errors.terminal_reason(errors.GraphError(100, "Object with ID '1' does not exist", subcode=33))
    assert reason == "auth_failed (Graph 100/33): Object with ID '1' does not exist"


def test_token_expiry_reason_names_code_subcode_and_message() -> None:
    exc = errors.GraphError(190, "Error validating access token: Session has expired", subcode=463, http_status=401)
    assert errors.terminal_reason(exc) == \
        "token_expired (Graph 190/463): Error validating access token: Session has expired"


def test_no_answer_after_the_request_was_written_may_have_sent() -> None:
    sent = errors.unreachable_send_error(errors.GraphUnreachable("read timeout", reason="timeout", maybe_sent=True))
    unsent = errors.unreachable_send_error(errors.GraphUnreachable("refused", reason="refused", maybe_sent=False))
    assert isinstance(sent, TransientSendError) and sent.maybe_sent and sent.reason == "graph_timeout"
    assert not unsent.maybe_sent
