"""Ack order (DESIGN §1): a sent message's delivery state only moves forward.

``server`` is what the send call itself proves; receipts then bring ``delivered``, ``read`` and
``played``. ``failed`` is not part of the order (a failed item never has acks).
"""

from __future__ import annotations

ACK_ORDER = ("server", "delivered", "read", "played")


def advances(current: str | None, new: str) -> bool:
    """True when ``new`` is a known ack later than ``current`` (None counts as ``server``)."""
    if new not in ACK_ORDER:
        return False
    return ACK_ORDER.index(new) > ACK_ORDER.index(current if current in ACK_ORDER else "server")
