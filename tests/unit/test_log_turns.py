"""The server's log lines are written once per event-loop turn, in order, and none is lost on an orderly exit."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import structlog

from tests.support.logs import restored_logging
from wahub import observability


class CountingStream(io.StringIO):
    """A stream that counts its ``write`` calls (each one a system call on a real file)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    with restored_logging():
        out = CountingStream()
        observability.configure_logging("info", "json", stream=out, per_turn=True)
        yield out


def _events(out: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in out.getvalue().splitlines()]


async def _next_turn() -> None:
    """Return after the callbacks the current turn scheduled (a flush among them) have run."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


async def test_info_lines_of_one_turn_go_out_together_after_it(stream: CountingStream) -> None:
    log = structlog.get_logger("wahub.test")
    for n in range(9):
        log.info("enqueued", n=n)
    assert stream.getvalue() == ""  # held until the turn ends
    await _next_turn()
    assert _events(stream) == ["enqueued"] * 9
    assert [json.loads(line)["n"] for line in stream.getvalue().splitlines()] == list(range(9))
    assert stream.writes == 1


async def test_a_warning_goes_out_at_once_after_the_lines_held_before_it(stream: CountingStream) -> None:
    log = structlog.get_logger("wahub.test")
    log.info("first")
    log.warning("second")
    assert _events(stream) == ["first", "second"]
    logging.getLogger("some.library").warning("third")  # the standard library's records: same order
    log.error("fourth")
    assert _events(stream) == ["first", "second", "third", "fourth"]
    log.info("fifth")
    await _next_turn()
    assert _events(stream) == ["first", "second", "third", "fourth", "fifth"]


async def test_lines_from_another_thread_go_out_at_once_and_in_order(stream: CountingStream) -> None:
    log = structlog.get_logger("wahub.test")
    log.info("held on the loop")
    worker = threading.Thread(target=lambda: log.info("from a thread"))
    worker.start()
    worker.join(timeout=10)
    assert _events(stream) == ["held on the loop", "from a thread"]


def test_lines_with_no_running_loop_go_out_at_once(stream: CountingStream) -> None:
    structlog.get_logger("wahub.test").info("no loop")
    assert _events(stream) == ["no loop"]


def test_a_line_held_when_the_loop_stopped_is_written_at_exit() -> None:
    script = (
        "import asyncio, structlog\n"
        "from wahub import observability\n"
        "observability.configure_logging('info', 'json', per_turn=True)\n"
        "loop = asyncio.new_event_loop()\n"
        "def last():\n"
        "    structlog.get_logger('wahub.test').info('held when the loop stopped')\n"
        "    loop.stop()\n"
        "loop.call_soon(last)\n"
        "loop.run_forever()\n"
        "loop.close()  # the flush the turn scheduled never runs\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert [json.loads(line)["event"] for line in done.stderr.splitlines()] == ["held when the loop stopped"]


def test_a_loop_stopped_before_its_flush_ran_does_not_strand_later_lines() -> None:
    out = io.StringIO()
    writer = observability.TurnWriter(out)
    loop = asyncio.new_event_loop()

    def log_then_stop() -> None:
        writer.hold("first")
        loop.stop()  # the flush this turn scheduled never runs: the loop is closed next

    loop.call_soon(log_then_stop)
    loop.run_forever()
    loop.close()
    assert out.getvalue() == ""

    async def later() -> None:
        writer.hold("second")
        await _next_turn()

    asyncio.run(later())
    assert out.getvalue().splitlines() == ["first", "second"]


async def test_what_is_held_is_written_by_flush_logs_and_by_configuring_again(stream: CountingStream) -> None:
    structlog.get_logger("wahub.test").info("held")
    observability.flush_logs()  # the server calls it when the hub has stopped
    assert _events(stream) == ["held"]
    structlog.get_logger("wahub.test").info("held again")
    observability.configure_logging("info", "json", stream=io.StringIO(), per_turn=True)
    assert _events(stream) == ["held", "held again"]  # not stranded in the writer configured before
