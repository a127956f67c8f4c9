"""The group-commit writer: batches concurrent requests, answers each caller on its own."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Sequence

import pytest

from tests.support.logs import restored_logging
from wahub.domain.errors import StoreUnavailable
from wahub.observability import configure_logging
from wahub.store.groupcommit import Batch, GroupCommit


class Recorder:
    """A flush that records its batches; requests < 0 are answered with an error."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def flush(self, batch: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(batch))
        await self.gate.wait()
        return [ValueError(f"bad {r}") if r < 0 else r * 10 for r in batch]


async def test_a_lone_request_is_flushed_at_once() -> None:
    rec = Recorder()
    gc: GroupCommit[int, int] = GroupCommit(rec.flush)
    assert await gc.submit(1) == 10
    assert rec.batches == [[1]]


async def test_requests_arriving_during_a_flush_form_the_next_batch() -> None:
    rec = Recorder()
    gc: GroupCommit[int, int] = GroupCommit(rec.flush)
    rec.gate.clear()
    first = asyncio.ensure_future(gc.submit(1))
    await asyncio.sleep(0)  # the writer starts flushing [1] and waits on the gate
    rest = [asyncio.ensure_future(gc.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 10
    assert [await r for r in rest] == [20, 30, 40]
    assert rec.batches == [[1], [2, 3, 4]]


async def test_each_caller_gets_its_own_error_and_the_others_their_results() -> None:
    rec = Recorder()
    gc: GroupCommit[int, int] = GroupCommit(rec.flush)
    results = await asyncio.gather(gc.submit(1), gc.submit(-2), gc.submit(3), return_exceptions=True)
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError)


async def test_a_failed_flush_fails_its_batch_and_the_writer_goes_on() -> None:
    calls = 0

    async def flush(batch: Sequence[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("database unavailable")
        return list(batch)

    gc: GroupCommit[int, int] = GroupCommit(flush)
    with pytest.raises(StoreUnavailable):
        await gc.submit(1)
    assert await gc.submit(2) == 2


async def test_batches_are_bounded_and_close_refuses_new_requests() -> None:
    rec = Recorder()
    gc: GroupCommit[int, int] = GroupCommit(rec.flush, max_batch=2)
    assert await asyncio.gather(*(gc.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert [len(b) for b in rec.batches] == [2, 2, 1]
    await gc.close()
    with pytest.raises(StoreUnavailable):
        await gc.submit(9)


# -- a flush that answers its batch before it returns (Batch.answer) --------------------------------------
async def test_a_batch_answered_from_another_thread_reaches_its_callers_while_the_flush_goes_on() -> None:
    release = asyncio.Event()

    async def flush(batch: Batch[int, int]) -> list[int | BaseException]:
        thread = threading.Thread(target=batch.answer, args=([r * 10 for r in batch],))
        thread.start()  # as the database's thread answers, right after its commit
        thread.join()
        await release.wait()  # the flush goes on: gives back its connection, say
        return [-1 for _ in batch]  # not used: the batch was answered

    gc: GroupCommit[int, int] = GroupCommit(flush)
    assert await asyncio.wait_for(asyncio.gather(gc.submit(1), gc.submit(2)), timeout=5) == [10, 20]
    release.set()
    await gc.close()


async def test_a_flush_that_fails_after_answering_leaves_the_answers() -> None:
    async def flush(batch: Batch[int, int]) -> list[int | BaseException]:
        batch.answer([ValueError("bad") if r < 0 else r * 10 for r in batch])  # on the loop's thread
        raise StoreUnavailable("could not give back the connection")

    gc: GroupCommit[int, int] = GroupCommit(flush)
    results = await asyncio.gather(gc.submit(1), gc.submit(-2), return_exceptions=True)
    assert results[0] == 10 and isinstance(results[1], ValueError)


async def test_an_answer_with_the_wrong_count_fails_the_batch() -> None:
    async def flush(batch: Batch[int, int]) -> list[int | BaseException]:
        batch.answer([1])
        return list(batch)

    gc: GroupCommit[int, int] = GroupCommit(flush)
    results = await asyncio.gather(gc.submit(1), gc.submit(2), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results), results


async def test_an_answer_skips_a_caller_that_was_cancelled() -> None:
    answered = threading.Event()
    flushing, gate = asyncio.Event(), asyncio.Event()

    async def flush(batch: Batch[int, int]) -> list[int | BaseException]:
        flushing.set()
        await gate.wait()
        thread = threading.Thread(target=lambda: (batch.answer(list(batch)), answered.set()))
        thread.start()
        thread.join()
        return list(batch)

    gc: GroupCommit[int, int] = GroupCommit(flush)
    first, second = asyncio.ensure_future(gc.submit(1)), asyncio.ensure_future(gc.submit(2))
    await flushing.wait()  # both callers are in the batch
    first.cancel()
    gate.set()
    assert await second == 2 and answered.is_set()
    assert first.cancelled()


async def test_first_runs_on_the_loop_before_any_caller_is_answered() -> None:
    seen: list[str] = []
    on_loop = threading.get_ident()

    async def flush(batch: Batch[int, int]) -> list[int | BaseException]:
        def first() -> None:  # records rather than asserts: an error in a loop callback is only logged
            seen.append("first on the loop" if threading.get_ident() == on_loop else "first elsewhere")

        thread = threading.Thread(target=batch.answer, args=(list(batch), first))
        thread.start()
        thread.join()
        return list(batch)

    async def one(n: int) -> None:
        await gc.submit(n)
        seen.append(f"answered {n}")

    gc: GroupCommit[int, int] = GroupCommit(flush)
    await asyncio.gather(one(1), one(2))
    assert seen == ["first on the loop", "answered 1", "answered 2"]


async def test_a_failure_after_the_answer_is_logged(capsys: pytest.CaptureFixture[str]) -> None:
    with restored_logging():
        configure_logging("info", "json", stream=sys.stdout)

        async def flush(batch: Batch[int, int]) -> list[int | BaseException]:
            batch.answer(list(batch))
            raise RuntimeError("connection could not be given back")

        gc: GroupCommit[int, int] = GroupCommit(flush)
        assert await gc.submit(7) == 7
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["event"], x["level"], x["error"]) for x in lines] == [
        ("batch_failed_after_answer", "warning", "RuntimeError: connection could not be given back")]
