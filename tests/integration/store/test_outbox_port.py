"""The outbox port on every implementation: enqueue, claim, hand-over, outcomes, operator actions."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, draft, enqueue, send
from wahub.domain.outbox import ItemStatus
from wahub.store.base import QueueFullSignal, Store

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


# -- outbox: enqueue -------------------------------------------------------------------------------------
async def test_insert_item_is_idempotent_per_instance_and_key(store: Store) -> None:
    first, created, depth = await enqueue(store, "order:1", payload={"message": "hello ✓"})
    assert created is True and depth == 1
    assert first.status == ItemStatus.QUEUED and first.attempts == 0
    assert (first.next_attempt_at, first.created_at, first.updated_at) == (T0, T0, T0)
    assert first.payload == {"message": "hello ✓"}

    again, created, depth = await enqueue(store, "order:1", now=T0 + 50, payload={"message": "other"})
    assert created is False and depth == 1
    assert again == first  # the stored item, untouched by the second payload

    other, created, _ = await enqueue(store, "order:1", instance="b")
    assert created is True and other.queue_id != first.queue_id  # keys are per instance
    assert await store.find_item_by_key("a", "order:1") == first
    assert await store.find_item_by_key("a", "order:2") is None
    assert await store.get_item(first.queue_id) == first
    items, total = await store.list_items("a", statuses=None, limit=10, offset=0)
    assert total == 1 and items == [first]


async def test_concurrent_identical_inserts_store_one_item(store: Store) -> None:
    results = await asyncio.gather(*(enqueue(store, "order:race") for _ in range(8)))
    assert sum(1 for _, created, _ in results if created) == 1
    assert len({item.queue_id for item, _, _ in results}) == 1
    _, total = await store.list_items("a", statuses=None, limit=100, offset=0)
    assert total == 1


async def test_queue_full_is_signalled_and_frees_up_when_items_finish(store: Store) -> None:
    await enqueue(store, "k1", max_open=2)
    await enqueue(store, "k2", max_open=2)
    with pytest.raises(QueueFullSignal) as full:
        await enqueue(store, "k3", max_open=2)
    assert full.value.open_count == 2
    assert await store.find_item_by_key("a", "k3") is None
    replay, created, depth = await enqueue(store, "k1", max_open=2)  # a replay is never refused
    assert created is False and depth == 2
    _, created, _ = await enqueue(store, "k3", instance="b", max_open=2)  # other instances unaffected
    assert created is True
    item = await store.claim_next("a", T0)
    assert item is not None and item.queue_id == replay.queue_id
    await send(store, item, "m1", T0 + 1)
    _, created, depth = await enqueue(store, "k3", max_open=2)
    assert created is True and depth == 2


# -- outbox: drain ---------------------------------------------------------------------------------------
async def test_claim_is_fifo_among_due_items(store: Store) -> None:
    a1, _, _ = await enqueue(store, "k1", now=T0)
    a2, _, _ = await enqueue(store, "k2", now=T0 + 1)
    a3, _, _ = await enqueue(store, "k3", now=T0 + 2)
    # the oldest is deferred: the next due one goes first, the deferred one when it is due
    first = await store.claim_next("a", T0 + 10)
    assert first is not None and first.queue_id == a1.queue_id
    assert first.status == ItemStatus.SENDING and first.updated_at == T0 + 10
    await store.release(first.seq, next_attempt_at=T0 + 1_000, now=T0 + 11)
    order = []
    for now in (T0 + 20, T0 + 30, T0 + 1_000):
        item = await store.claim_next("a", now)
        assert item is not None
        order.append(item.queue_id)
        await send(store, item, f"m-{item.queue_id}", now)
    assert order == [a2.queue_id, a3.queue_id, a1.queue_id]
    assert await store.claim_next("a", T0 + 5_000) is None


async def test_next_attempt_at_is_respected(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    assert await store.next_due_at("a") == T0
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    assert await store.next_due_at("a") is None  # nothing queued while it is sending
    await store.release(claimed.seq, next_attempt_at=T0 + 1_000, now=T0 + 1)
    assert await store.next_due_at("a") == T0 + 1_000
    assert await store.claim_next("a", T0 + 999) is None
    again = await store.claim_next("a", T0 + 1_000)
    assert again is not None and again.queue_id == item.queue_id
    assert await store.next_due_at("b") is None


async def test_only_one_item_per_instance_is_sending(store: Store) -> None:
    await enqueue(store, "k1")
    k2, _, _ = await enqueue(store, "k2")
    await enqueue(store, "k1", instance="b")
    first = await store.claim_next("a", T0)
    assert first is not None
    assert await store.claim_next("a", T0 + 1) is None  # k2 is due, but k1 holds the slot
    other = await store.claim_next("b", T0 + 1)  # instances are independent
    assert other is not None and other.instance_id == "b"
    await store.mark_failed(first, error="boom", reason="invalid_recipient", now=T0 + 2, count_attempt=True)
    second = await store.claim_next("a", T0 + 3)
    assert second is not None and second.queue_id == k2.queue_id


async def test_concurrent_claims_hand_out_exactly_one_item(store: Store) -> None:
    for i in range(5):
        await enqueue(store, f"a{i}")
        await enqueue(store, f"b{i}", instance="b")
    results = await asyncio.gather(*(store.claim_next(inst, T0) for inst in ("a", "b") * 6))
    claimed = [r for r in results if r is not None]
    assert sorted((r.instance_id, r.idempotency_key) for r in claimed) == [("a", "a0"), ("b", "b0")]
    for inst in ("a", "b"):
        stats = await store.queue_stats(inst)
        assert stats.by_status == {"queued": 4, "sending": 1}
        assert stats.depth == 5 and stats.oldest_queued_at == T0


async def test_release_mark_handed_over_sent_and_failed(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0 + 1)
    got = await store.get_item(item.queue_id)
    assert got is not None and got.handed_over_at == T0 + 1 and got.status == ItemStatus.SENDING
    assert await store.send_history("a", 0) == [T0 + 1]

    # transient error: back to the queue with the error, one attempt counted, send log kept
    await store.release(claimed.seq, next_attempt_at=T0 + 500, now=T0 + 2, error="timeout", reason="timeout",
                        count_attempt=True)
    got = await store.get_item(item.queue_id)
    assert got is not None
    assert (got.status, got.attempts, got.next_attempt_at, got.handed_over_at, got.last_error,
            got.error_reason, got.updated_at) == (
        ItemStatus.QUEUED, 1, T0 + 500, None, "timeout", "timeout", T0 + 2)
    assert await store.send_history("a", 0) == [T0 + 1]

    # not connected: nothing went out, so the send log forgets it and no attempt is counted
    claimed = await store.claim_next("a", T0 + 500)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0 + 501)
    await store.release(claimed.seq, next_attempt_at=T0 + 600, now=T0 + 502, unlog=True)
    got = await store.get_item(item.queue_id)
    assert got is not None and got.attempts == 1 and got.last_error == "timeout"
    assert await store.send_history("a", 0) == []

    # sent: message id, sent time, attempts, event stored with it
    claimed = await store.claim_next("a", T0 + 600)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0 + 601)
    ev = draft("a")
    await store.mark_sent(claimed, message_id="wamid.1", now=T0 + 602, events=[ev])
    got = await store.get_item(item.queue_id)
    assert got is not None
    assert (got.status, got.message_id, got.sent_at, got.attempts, got.updated_at) == (
        ItemStatus.SENT, "wamid.1", T0 + 602, 2, T0 + 602)
    assert await store.get_item_by_message_id("a", "wamid.1") == got
    assert await store.get_item_by_message_id("b", "wamid.1") is None
    assert [e.event_id for e in await store.list_events("a", status=None, limit=10)] == [ev.event_id]
    assert await store.count_sent_since("a", T0) == 1

    # permanent failure: final at once, with reason, attempt counted, send log dropped on request
    bad, _, _ = await enqueue(store, "k2", now=T0 + 700)
    claimed = await store.claim_next("a", T0 + 700)
    assert claimed is not None and claimed.queue_id == bad.queue_id
    await store.mark_handed_over(claimed, T0 + 701)
    await store.mark_failed(claimed, error="not on WhatsApp", reason="not_on_whatsapp", now=T0 + 702,
                            count_attempt=True, events=[draft("a", "message_failed")], unlog=True)
    got = await store.get_item(bad.queue_id)
    assert got is not None
    assert (got.status, got.attempts, got.last_error, got.error_reason) == (
        ItemStatus.FAILED, 1, "not on WhatsApp", "not_on_whatsapp")
    assert await store.send_history("a", 0) == [T0 + 601]
    assert await store.count_failures_since("a", T0 + 701) == 1
    assert await store.count_failures_since("a", T0 + 702) == 0
    assert [e.event for e in await store.list_events("a", status=None, limit=10)] == [
        "message_failed", "message_sent"]


async def test_release_of_an_item_that_is_not_sending_changes_nothing(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await send(store, claimed, "m1", T0 + 1)
    await store.release(claimed.seq, next_attempt_at=T0 + 9, now=T0 + 9, error="late", count_attempt=True)
    got = await store.get_item(item.queue_id)
    assert got is not None and (got.status, got.attempts, got.last_error) == (ItemStatus.SENT, 1, None)


async def test_poll_is_stored_when_sent(store: Store) -> None:
    payload = {"caption": "Confirm order #1?", "options": ["Yes", "No"], "multipleAnswers": False}
    await enqueue(store, "poll:1", kind="poll", payload=payload)
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await send(store, claimed, "wamid.poll", T0 + 1)
    poll = await store.get_poll("a", "wamid.poll")
    assert poll is not None
    assert (poll.queue_id, poll.chat_id, poll.idempotency_key, poll.caption, poll.options, poll.multiple) == (
        claimed.queue_id, "201000000001@c.us", "poll:1", "Confirm order #1?", ["Yes", "No"], False)
    assert await store.get_poll("b", "wamid.poll") is None


async def test_recover_in_flight_requeues_or_marks_uncertain(store: Store) -> None:
    a_item, _, _ = await enqueue(store, "k1")
    b_item, _, _ = await enqueue(store, "k1", instance="b")
    waiting, _, _ = await enqueue(store, "k2")
    claimed_a = await store.claim_next("a", T0)
    claimed_b = await store.claim_next("b", T0)
    assert claimed_a is not None and claimed_b is not None
    await store.mark_handed_over(claimed_b, T0 + 1)  # b's item may have reached WhatsApp

    requeued, uncertain = await store.recover_in_flight(T0 + 100)
    assert requeued == 1
    assert [u.queue_id for u in uncertain] == [b_item.queue_id]
    assert uncertain[0].status == ItemStatus.UNCERTAIN  # reported as it is now stored
    assert uncertain[0].error_reason == "uncertain" and uncertain[0].last_error
    assert uncertain[0] == await store.get_item(b_item.queue_id)
    got_a = await store.get_item(a_item.queue_id)
    assert got_a is not None and got_a.status == ItemStatus.QUEUED and got_a.updated_at == T0 + 100
    got_w = await store.get_item(waiting.queue_id)
    assert got_w is not None and got_w.status == ItemStatus.QUEUED and got_w.updated_at == T0
    # an uncertain item is never claimed again by itself; FIFO resumes with the re-queued one
    assert await store.claim_next("b", T0 + 200) is None
    again = await store.claim_next("a", T0 + 200)
    assert again is not None and again.queue_id == a_item.queue_id
    # until its report is stored, a stop and start returns it again (a report is never lost) ...
    requeued, unreported = await store.recover_in_flight(T0 + 300)
    assert (requeued, [u.queue_id for u in unreported]) == (1, [b_item.queue_id])
    report = draft("b", "message_uncertain")
    assert await store.mark_uncertain_reported(b_item.queue_id, T0 + 400, [report]) is True
    assert await store.mark_uncertain_reported(b_item.queue_id, T0 + 401, [draft("b")]) is False  # once only
    assert [e.event_id for e in await store.list_events("b", status=None, limit=10)] == [report.event_id]
    # ... and once stored, never again
    assert await store.recover_in_flight(T0 + 500) == (0, [])
    assert await store.mark_uncertain_reported(a_item.queue_id, T0 + 600, [draft("a")]) is False  # not uncertain


async def test_send_history_counts_handovers_in_window(store: Store) -> None:
    for i, at in enumerate((T0 + 10, T0 + 20, T0 + 30)):
        await enqueue(store, f"k{i}")
        claimed = await store.claim_next("a", at)
        assert claimed is not None
        await send(store, claimed, f"m{i}", at)
    assert await store.send_history("a", 0) == [T0 + 10, T0 + 20, T0 + 30]
    assert await store.send_history("a", T0 + 10) == [T0 + 20, T0 + 30]  # `since` is exclusive
    assert await store.count_sent_since("a", T0 + 10) == 2
    assert await store.send_history("b", 0) == []


async def test_operator_actions_and_queue_listing(store: Store) -> None:
    items = [(await enqueue(store, f"k{i}", now=T0 + i))[0] for i in range(5)]
    assert await store.set_item_status(items[0].queue_id, from_statuses=["queued"], to_status="canceled",
                                       now=T0 + 10) is True
    assert await store.set_item_status(items[0].queue_id, from_statuses=["queued"], to_status="canceled",
                                       now=T0 + 11) is False
    assert await store.set_item_status("missing", from_statuses=["queued"], to_status="canceled",
                                       now=T0 + 11) is False
    claimed = await store.claim_next("a", T0 + 20)
    assert claimed is not None and claimed.queue_id == items[1].queue_id
    await store.mark_failed(claimed, error="x", reason="too_long", now=T0 + 21, count_attempt=True)
    ev = draft("a", "retry")
    assert await store.set_item_status(items[1].queue_id, from_statuses=["failed"], to_status="queued",
                                       now=T0 + 30, reset_attempts=True, events=[ev]) is True
    retried = await store.get_item(items[1].queue_id)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.next_attempt_at, retried.handed_over_at) == (
        ItemStatus.QUEUED, 0, T0 + 30, None)
    assert [e.event_id for e in await store.list_events("a", status=None, limit=5)] == [ev.event_id]

    page, total = await store.list_items("a", statuses=["queued"], limit=2, offset=1)
    assert total == 4 and [i.queue_id for i in page] == [items[2].queue_id, items[3].queue_id]
    assert await store.clear_queue("a", T0 + 40) == 4
    stats = await store.queue_stats("a")
    assert stats.by_status == {"canceled": 5} and stats.depth == 0 and stats.oldest_queued_at is None
    cleared = await store.get_item(items[4].queue_id)
    assert cleared is not None and (cleared.error_reason, cleared.updated_at) == ("canceled", T0 + 40)


# -- send instants, chosen ids and derived keys --------------------------------------------------------
async def test_the_send_instant_replaces_the_hand_over_time_in_the_log(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0 + 5, chosen_message_id="3EB0CHOSEN")
    assert await store.send_history("a", 0) == [T0 + 5]
    await store.stamp_send(claimed.queue_id, T0 + 42)
    assert await store.send_history("a", 0) == [T0 + 42]
    assert await store.latest_send_at() == T0 + 42
    assert await store.mark_sent(claimed, message_id="3EB0CHOSEN", now=T0 + 60, sent_at=T0 + 42) is True
    sent = await store.get_item(item.queue_id)
    assert sent is not None and sent.sent_at == T0 + 42 and sent.chosen_message_id == "3EB0CHOSEN"
    found = await store.find_by_chosen_id("a", "3EB0CHOSEN")
    assert found is not None and found.queue_id == item.queue_id
    assert await store.find_by_chosen_id("b", "3EB0CHOSEN") is None


async def test_mark_sent_only_from_the_statuses_it_is_given(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0)
    await store.set_item_status(claimed.queue_id, from_statuses=["sending"], to_status="uncertain", now=T0 + 1)
    assert await store.mark_sent(claimed, message_id="m1", now=T0 + 2) is False  # not sending any more
    assert (await store.get_item(item.queue_id)).status == ItemStatus.UNCERTAIN  # type: ignore[union-attr]
    assert await store.mark_sent(claimed, message_id="m1", now=T0 + 3, from_statuses=("uncertain",)) is True
    assert (await store.get_item(item.queue_id)).status == ItemStatus.SENT  # type: ignore[union-attr]


async def test_latest_derived_is_the_newest_item_with_a_derived_key_and_that_payload(store: Store) -> None:
    assert await store.latest_derived("a", "f" * 64) is None
    for n, source in enumerate(("derived", "header", "derived")):
        await store.insert_item(queue_id=f"q{n}", instance_id="a", idempotency_key=f"auto:x:{n}", key_source=source,
                                kind="text", chat_id="201000000001@c.us", payload={"message": "hi"},
                                fingerprint="f" * 64, now=T0 + n, max_open=100)
    newest = await store.latest_derived("a", "f" * 64)
    assert newest is not None and newest.queue_id == "q2"
    assert await store.latest_derived("b", "f" * 64) is None


async def test_a_claim_with_hand_over_logs_the_send_and_the_outcome_stamps_its_instant(store: Store) -> None:
    first, _, _ = await enqueue(store, "k1")
    await enqueue(store, "k2")
    claimed = await store.claim_next("a", T0 + 5, hand_over=True, chosen_message_id="3EB0CHOSEN")
    assert claimed is not None and claimed.queue_id == first.queue_id  # FIFO, as without hand-over
    assert claimed.status == ItemStatus.SENDING and claimed.handed_over_at == T0 + 5
    assert claimed.chosen_message_id == "3EB0CHOSEN"
    assert await store.send_history("a", 0) == [T0 + 5]  # logged in the claim's own commit
    assert await store.claim_next("a", T0 + 6, hand_over=True) is None  # the one `sending` slot is held
    assert await store.mark_sent(claimed, message_id="3EB0CHOSEN", now=T0 + 60, sent_at=T0 + 42) is True
    assert await store.send_history("a", 0) == [T0 + 42]  # the send loop's outcome stamps the instant
    assert (await store.get_item(first.queue_id)).sent_at == T0 + 42  # type: ignore[union-attr]


async def test_a_reconciled_send_keeps_the_logged_instant(store: Store) -> None:
    await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0, hand_over=True, chosen_message_id="3EB0CHOSEN")
    assert claimed is not None
    await store.stamp_send(claimed.queue_id, T0 + 7)  # the engine call's instant, stamped after an error
    await store.set_item_status(claimed.queue_id, from_statuses=["sending"], to_status="uncertain", now=T0 + 8)
    assert await store.mark_sent(claimed, message_id="3EB0CHOSEN", now=T0 + 9, sent_at=T0,
                                 from_statuses=("sending", "uncertain")) is True
    assert await store.send_history("a", 0) == [T0 + 7]  # evidence does not move the window's instant


async def test_a_hand_over_taken_back_counts_no_send_and_a_stop_then_requeues_the_item(store: Store) -> None:
    first, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0 + 5, hand_over=True, chosen_message_id="3EB0CHOSEN")
    assert claimed is not None and await store.send_history("a", 0) == [T0 + 5]
    await store.take_back_hand_over(claimed)  # the number must be asked about first: no engine call yet
    assert await store.send_history("a", 0) == []  # no send counted for the windows
    held = await store.get_item(first.queue_id)
    assert held is not None and held.status == ItemStatus.SENDING and held.handed_over_at is None
    assert await store.claim_next("a", T0 + 6) is None  # still the instance's one `sending` item
    # a stop while WhatsApp is asked: the item was never handed over, so it is queued again, not uncertain
    assert await store.recover_in_flight(T0 + 10) == (1, [])
    again = await store.claim_next("a", T0 + 20, hand_over=True)
    assert again is not None and again.queue_id == first.queue_id
    assert await store.mark_sent(again, message_id="m1", now=T0 + 30, sent_at=T0 + 25) is True
    assert await store.send_history("a", 0) == [T0 + 25]
