"""Phone numbers and SQL parameters inside error text never reach a log line, whatever the level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from tests.support.logs import restored_logging
from wahub import logredact, observability

PHONE = "201099887766"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    with restored_logging():
        out = io.StringIO()
        observability.configure_logging("debug", "json", stream=out)
        yield out


def test_a_traceback_carrying_a_whatsapp_id_is_masked(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"send to {PHONE}@s.whatsapp.net failed; [parameters: ('whsec-x', 'hello')]")
    except RuntimeError:
        structlog.get_logger("wahub.test").exception("send_failed", detail=f"+{PHONE}")
        logging.getLogger("some.library").debug("retrying %s", f"{PHONE}@c.us", exc_info=True)
    text = stream.getvalue()
    assert PHONE not in text and "whsec-x" not in text and "hello" not in text
    assert "********7766@s.whatsapp.net" in text and "[parameters hidden]" in text
    assert "send_failed" in text and "RuntimeError" in text


@pytest.mark.parametrize(("raw", "masked"), [
    ("201000000001@c.us", "********0001@c.us"),
    ("call +4915112345678 now", "call *********5678 now"),
    ("id 3EB0C767D26B8A5F0C12", "id 3EB0C767D26B8A5F0C12"),  # digits inside an id stay
    ("attempt 3 of 30", "attempt 3 of 30"),
])
def test_mask_text(raw: str, masked: str) -> None:
    assert logredact.mask_text(raw) == masked


def test_one_line_keeps_its_field_order_redacts_by_name_and_scrubs_secrets_at_every_level() -> None:
    saved = structlog.get_config()
    out = io.StringIO()
    observability.configure_logging("debug", "json", stream=out, secrets=("s3cret-key",))
    structlog.contextvars.bind_contextvars(request_id="r1")
    try:
        log = structlog.get_logger("wahub.test")
        log.info("enqueued", instance_id=PHONE, queue_id="0123456789abcdef" * 2, kind="text", key_source="header")
        log.info("named", Token="t", url="https://x/?k=s3cret-key", note=f"to {PHONE}")
        log.debug("debugging", token="t", url="s3cret-key")
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
        structlog.configure(**saved)
    first, named, debugging = (json.loads(line) for line in out.getvalue().splitlines())
    assert list(first) == ["instance_id", "queue_id", "kind", "key_source", "event", "request_id", "level", "timestamp"]
    assert first["instance_id"] == "********7766" and first["queue_id"] == "0123456789abcdef" * 2
    assert (named["Token"], named["url"], named["note"]) == ("[redacted]", "https://x/?k=[redacted]", "to ********7766")
    assert (debugging["token"], debugging["url"]) == ("t", "[redacted]")  # names stay at debug, secrets never
