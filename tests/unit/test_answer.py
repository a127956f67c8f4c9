"""The idempotency answer (DESIGN §3.1) as a pure decision."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wahub.domain.answer import Answer, for_existing
from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem

ITEM = OutboxItem(seq=1, queue_id="q", instance_id="i", idempotency_key="k", key_source="header", kind=ItemKind.TEXT,
                  chat_id="1@c.us", payload={}, fingerprint="fp", status=ItemStatus.QUEUED, attempts=0,
                  next_attempt_at=0, created_at=0, updated_at=0, handed_over_at=None, sent_at=None, message_id=None,
                  last_error=None, error_reason=None)


@pytest.mark.parametrize(("status", "retry", "expected"), [
    (ItemStatus.QUEUED, False, Answer.REPLAY_OPEN),
    (ItemStatus.SENDING, True, Answer.REPLAY_OPEN),
    (ItemStatus.SENT, False, Answer.REPLAY_SENT),
    (ItemStatus.SENT, True, Answer.REPLAY_SENT),
    (ItemStatus.FAILED, False, Answer.CONFLICT_FINAL),
    (ItemStatus.FAILED, True, Answer.REQUEUE),
    (ItemStatus.CANCELED, True, Answer.REQUEUE),
    (ItemStatus.UNCERTAIN, False, Answer.CONFLICT_FINAL),
])
def test_same_key_same_payload(status: ItemStatus, retry: bool, expected: Answer) -> None:
    assert for_existing(replace(ITEM, status=status), "fp", retry=retry) == expected


def test_same_key_other_payload_is_a_conflict_whatever_the_status() -> None:
    for status in ItemStatus:
        assert for_existing(replace(ITEM, status=status), "other", retry=True) == Answer.CONFLICT_PAYLOAD
