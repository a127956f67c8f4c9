"""Each number is resolved to the id WhatsApp knows before its first send (fake clock, sandbox stamps).

Asserted on what the sandbox received and when: the delivery goes to the resolved id, a slow
answer never separates the send's instant from the engine call (the pacing holds on the stamps and
the persisted instants are the stamps), the answer is cached, and a number not on WhatsApp fails
after one attempt.
"""

from __future__ import annotations

from typing import Any

from tests.support.fakehub import FakeHub, build
from tests.unit.test_sendloop import MIN, SEC, assert_paced, ready, stamps
from wahub.domain import directory
from wahub.domain.errors import EngineError, InvalidInput
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.runtime.clock import FakeClock
from wahub.store.memory import MemoryStore

TYPED = "5511987654321"  # São Paulo mobile with its ninth digit
KNOWN = "551187654321@c.us"  # the account WhatsApp has: registered before the ninth digit


class SlowNumbersStore(MemoryStore):
    """Number answers take a variable time to read and write (a loaded database)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: FakeClock | None = None
        self.delays = iter([0, 40, 170, 5, 90, 260, 15, 0, 120] * 20)

    async def find_number(self, instance_id: str, typed: str) -> tuple[str | None, int] | None:
        assert self.clock is not None
        await self.clock.sleep(next(self.delays))
        return await super().find_number(instance_id, typed)

    async def remember_number(self, instance_id: str, typed: str, resolved: str | None, *, now: int) -> None:
        assert self.clock is not None
        await self.clock.sleep(next(self.delays))
        await super().remember_number(instance_id, typed, resolved, now=now)


def _count_lookups(fh: FakeHub, iid: str) -> list[str]:
    """Record every get-number-id the engine is asked (the engine still answers)."""
    asked: list[str] = []

    async def counted(number: str, ask: Any) -> Any:
        asked.append(number)
        return await ask()
    _answer_with(fh, iid, counted)
    return asked


async def test_sends_go_to_the_resolved_id_paced_on_engine_stamps_with_slow_answers() -> None:
    store = SlowNumbersStore()
    fh = build(None, store=store, limit_per_minute=6, send_interval_ms=500)
    store.clock = fh.clock
    iid = await ready(fh)
    await fh.world.fault(iid, "resolves_to", {"chatId": TYPED, "to": KNOWN})
    asked = _count_lookups(fh, iid)
    for i in range(12):
        chat = TYPED if i % 2 == 0 else f"2010000000{i:02d}"
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": chat, "message": f"m{i}"}, header_key=f"k{i}")
    for _ in range(3 * 60):
        await fh.advance(SEC)
    delivered = fh.world.phones[iid].deliveries
    assert len(delivered) == 12
    assert {d.chat_id for d in delivered[::2]} == {KNOWN}  # never the typed spelling
    times = stamps(fh, iid)
    assert_paced(times, 6, 500)
    assert sorted(await store.send_history(iid, 0)) == times  # the instants are the engine's stamps
    assert asked.count(TYPED) == 1  # asked once, then answered from the cache
    found = await MemoryStore.find_number(store, iid, TYPED + "@c.us")  # both forms stored: typed -> known
    assert found is not None and found[0] == KNOWN


async def test_a_number_not_on_whatsapp_fails_after_one_attempt_with_a_clear_error() -> None:
    fh = build(None)
    iid = await ready(fh)
    await fh.world.fault(iid, "unregistered", {"chatId": "201099999999"})
    result = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201099999999", "message": "hi"},
                                         header_key="gone")
    await fh.advance(5 * SEC)
    item = await fh.hub.outbox.get_item(iid, result.item.queue_id)
    assert item.status == ItemStatus.FAILED and item.attempts <= 1
    assert "201099999999@c.us is not on WhatsApp" in (item.last_error or "")
    assert fh.world.phones[iid].deliveries == []


async def test_the_answer_expires_after_the_cache_time_and_is_asked_again() -> None:
    fh = build(None, resolve_cache_seconds=60)
    iid = await ready(fh)
    asked = _count_lookups(fh, iid)
    for i in range(2):
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": TYPED, "message": f"a{i}"}, header_key=f"a{i}")
    await fh.advance(10 * SEC)
    await fh.world.fault(iid, "resolves_to", {"chatId": TYPED, "to": KNOWN})  # WhatsApp's answer changes
    await fh.advance(2 * MIN)
    await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": TYPED, "message": "b"}, header_key="b")
    await fh.advance(10 * SEC)
    assert asked == [TYPED, TYPED]
    assert [d.chat_id for d in fh.world.phones[iid].deliveries] == [TYPED + "@c.us"] * 2 + [KNOWN]


def test_bodies_are_checked_field_by_field() -> None:
    group = directory.ACTIONS["add-group-participant"]
    args = directory.parse(group, {"chatId": "120363000000000001@g.us", "participant": "+20 100 000 0001"})
    assert args == {"group_id": "120363000000000001@g.us", "participant": "201000000001@c.us"}
    for body, field in (({"chatId": "201000000001", "participant": "201000000002"}, "chatId"),
                        ({"chatId": "120363000000000001@g.us"}, "participant"),
                        ({"chatId": "120363000000000001@g.us", "participant": "120363000000000002@g.us"},
                         "participant")):
        try:
            directory.parse(group, body)
        except InvalidInput as exc:
            assert field in str(exc)
        else:
            raise AssertionError(f"{body} was accepted")
    mute = directory.parse(directory.ACTIONS["mute-chat"], {"chatId": "201000000001", "unmuteDate": "1893456000"})
    assert mute["until"] == 1_893_456_000_000
    assert directory.parse(directory.ACTIONS["mute-chat"], {"chatId": "201000000001"})["until"] == -1
    assert directory.formatted("5511987654321") == "+55 11987654321"


async def test_a_mexican_mobile_typed_with_521_goes_to_the_account_whatsapp_has() -> None:
    fh = build(None)
    iid = await ready(fh)
    await fh.world.fault(iid, "resolves_to", {"chatId": "5215512345678", "to": "525512345678@c.us"})
    await fh.hub.outbox.enqueue(iid, ItemKind.POLL, {"chatId": "+52 1 55 1234 5678", "caption": "¿Confirmas?",
                                                     "options": ["Sí", "No"]}, header_key="mx")
    await fh.advance(5 * SEC)
    assert [(d.chat_id, d.kind) for d in fh.world.phones[iid].deliveries] == [("525512345678@c.us", "poll")]


def _answer_with(fh: FakeHub, iid: str, answer: Any) -> None:
    """Route the engine's get-number-id through ``answer(number, ask)``; ``ask()`` is the engine's own answer."""
    engine = fh.hub.instances[iid].engine
    assert engine is not None
    original = engine.directory

    def directory_spy() -> Any:
        book = original()
        call = book.call

        async def patched(action: str, args: Any) -> Any:
            if action != "get-number-id":
                return await call(action, args)
            return await answer(args["number"], lambda: call(action, args))

        book.call = patched  # type: ignore[method-assign]
        return book

    engine.directory = directory_spy  # type: ignore[method-assign]


async def test_a_crash_while_whatsapp_is_asked_leaves_the_item_queued_not_uncertain() -> None:
    store = MemoryStore()
    true = FakeClock()
    fh = build(None, store=store, clock=true, typing_indicator_enabled=False)  # the claim hands over at once

    async def never(number: str, ask: Any) -> Any:
        await fh.clock.sleep(3_600_000)
    iid = await ready(fh)
    _answer_with(fh, iid, never)
    queued = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": TYPED, "message": "hi"}, header_key="k")
    await fh.advance(5 * SEC)  # the question is out; the process dies here (no stop)
    assert await store.send_history(iid, 0) == []  # nothing counted as sent while asking
    requeued, uncertain = await store.recover_in_flight(true.now_ms())  # what the next start does
    assert uncertain == []
    item = await store.get_item(queued.item.queue_id)
    assert item is not None and item.status == ItemStatus.QUEUED and item.handed_over_at is None


async def test_a_failed_question_counts_no_send_and_backs_off() -> None:
    fh = build(None, typing_indicator_enabled=False)
    iid = await ready(fh)
    asked: list[int] = []

    async def failing(number: str, ask: Any) -> Any:
        asked.append(fh.clock.now_ms())
        raise EngineError("no answer")
    _answer_with(fh, iid, failing)
    queued = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": TYPED, "message": "hi"}, header_key="k")
    await fh.advance(3 * SEC)
    assert await fh.hub.store.send_history(iid, 0) == []
    item = await fh.hub.outbox.get_item(iid, queued.item.queue_id)
    assert item.status == ItemStatus.QUEUED and item.attempts == 1 and item.error_reason == "resolve_failed"
    assert len(asked) == 1  # retried after a backoff, not in a loop
