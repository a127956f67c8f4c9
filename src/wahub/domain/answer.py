"""The idempotency answer (DESIGN §3.1): what a send under an existing key gets back.

A pure decision over the stored item, the new payload's fingerprint and whether the client asked
for a retry; the runtime carries it out and the API maps it to a status code (202 / 200 / 409).
"""

from __future__ import annotations

import enum

from wahub.domain.outbox import ItemStatus, OutboxItem


class Answer(enum.Enum):
    """What to do with a send whose key already names an item."""

    REPLAY_OPEN = "replay_open"  # still queued or sending: 202, the same item
    REPLAY_SENT = "replay_sent"  # already sent: 200 with the original message id
    REQUEUE = "requeue"  # failed/canceled/uncertain and the client asked for a retry: queue it again
    CONFLICT_PAYLOAD = "conflict_payload"  # the key names another message: 409
    CONFLICT_FINAL = "conflict_final"  # failed/canceled/uncertain without retry: 409 with its error


REQUEUEABLE = frozenset({ItemStatus.FAILED, ItemStatus.CANCELED, ItemStatus.UNCERTAIN})
# key_source of an item moved from the existing wa-hub (``wa-hub import-node``): sent there, and
# its payload was never kept, so there is no fingerprint to compare: any send under its key replays it.
IMPORTED = "imported"


def for_existing(item: OutboxItem, fingerprint: str, *, retry: bool) -> Answer:
    """The answer for a send whose key already names ``item``."""
    if item.key_source == IMPORTED and item.status == ItemStatus.SENT:
        return Answer.REPLAY_SENT
    if item.fingerprint != fingerprint:
        return Answer.CONFLICT_PAYLOAD
    if item.status in REQUEUEABLE:
        return Answer.REQUEUE if retry else Answer.CONFLICT_FINAL
    if item.status == ItemStatus.SENT:
        return Answer.REPLAY_SENT
    return Answer.REPLAY_OPEN
