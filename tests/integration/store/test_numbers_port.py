"""Numbers port contract (memory, SQLite, PostgreSQL): WhatsApp's answer about a typed number."""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0
from wahub.store.base import Store

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


async def test_answers_are_kept_per_instance_and_the_newest_wins(store: Store) -> None:
    assert await store.find_number("a", "5511987654321@c.us") is None
    await store.remember_number("a", "5511987654321@c.us", "551187654321@c.us", now=T0)
    await store.remember_number("a", "201099999999@c.us", None, now=T0 + 1)  # not on WhatsApp
    assert await store.find_number("a", "5511987654321@c.us") == ("551187654321@c.us", T0)
    assert await store.find_number("a", "201099999999@c.us") == (None, T0 + 1)
    assert await store.find_number("b", "5511987654321@c.us") is None
    await store.remember_number("a", "201099999999@c.us", "201099999999@c.us", now=T0 + 5)  # joined since
    assert await store.find_number("a", "201099999999@c.us") == ("201099999999@c.us", T0 + 5)


async def test_answers_go_with_their_instance(store: Store) -> None:
    await store.remember_number("a", "5511987654321@c.us", "551187654321@c.us", now=T0)
    await store.remember_number("b", "5511987654321@c.us", "5511987654321@c.us", now=T0)
    await store.delete_instance("a")
    assert await store.find_number("a", "5511987654321@c.us") is None
    assert await store.find_number("b", "5511987654321@c.us") == ("5511987654321@c.us", T0)
