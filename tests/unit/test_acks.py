"""Ack order: server < delivered < read < played, forward only; unknown acks never advance."""

from __future__ import annotations

from wahub.domain import acks


def test_the_order_starts_at_the_servers_ack() -> None:
    assert acks.ACK_ORDER == ("server", "delivered", "read", "played")


def test_acks_only_move_forward() -> None:
    assert acks.advances(None, "delivered")
    assert acks.advances("server", "read")
    assert acks.advances("delivered", "played")
    assert not acks.advances("read", "delivered")
    assert not acks.advances("read", "read")
    assert not acks.advances(None, "server")  # a send is already `server`
    assert not acks.advances("server", "failed")
