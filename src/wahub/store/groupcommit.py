"""Group commit: many concurrent requests' writes in one transaction, by one writer task.

Why: with an async driver every statement is a round trip between the event loop and the
driver (aiosqlite's thread, or the PostgreSQL socket), and every transaction ends in a commit.
Enqueue is the hot write path (DESIGN §3.1: "response within milliseconds"), so instead of one
transaction per request, requests line up here and one writer task flushes whatever is waiting
as one batch: a few statements and one commit for the lot. Nothing waits for a batch to fill up:
the writer takes all that is pending, and requests that arrive while a flush runs form the next
batch, so an idle hub answers a lone request as fast as before and a busy one amortises.

Each caller gets its own result (or its own exception) only after the flush that holds its
request has committed, so an answer always means "durable". A flush may answer its batch the moment
the commit returned (:meth:`Batch.answer`, from any thread), before it gives back its connection and
before the writer task's next turn on the event loop: on SQLite that is what the answers waited for
(docs/PERFORMANCE.md, "Answers straight from the database thread").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import structlog

from wahub.domain.errors import StoreUnavailable

log = structlog.get_logger("wahub.store")

Req = TypeVar("Req")
Res = TypeVar("Res")


class Batch(list[Req], Generic[Req, Res]):
    """The requests of one flush, in arrival order; :meth:`answer` answers them before the flush returns."""

    def __init__(self, requests: Sequence[Req], futures: Sequence[asyncio.Future[Res]],
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(requests)
        self._futures = futures
        self._loop = loop
        self._loop_thread = threading.get_ident()  # a batch is made on its event loop's thread
        self.answered = False

    def answer(self, results: Sequence[Res | BaseException], first: Callable[[], None] | None = None) -> None:
        """Answer each request with its entry of ``results`` (a result, or an exception to raise in its caller).

        For a flush whose batch is durable (committed) before the flush is done: the callers need not wait
        for what the flush does after, such as giving back its connection. Callable from any thread: from
        another one (the database's), the answers are set on the event loop, in a callback queued at once,
        so before anything the flush's own completion queues after it. The flush's return value and any
        exception it raises afterwards are then not used. Raises ValueError when ``results`` does not hold
        one entry per request, RuntimeError when the event loop is closed.

        ``first`` runs on the event loop just before the answers are set: the store reports there that
        its writes succeed again, so no caller is answered while a fault its own write ended still shows.
        """
        if len(results) != len(self):
            raise ValueError(f"{len(results)} results for a batch of {len(self)}")
        self.answered = True
        if threading.get_ident() == self._loop_thread:
            _settle(self._futures, results, first)
        else:
            self._loop.call_soon_threadsafe(_settle, self._futures, results, first)


def _settle(futures: Sequence[asyncio.Future[Any]], results: Sequence[Any],
            first: Callable[[], None] | None = None) -> None:
    """Set each future still waiting to its result, or its exception (on the event loop's thread)."""
    if first is not None:
        first()
    for fut, result in zip(futures, results, strict=True):
        if fut.done():  # its caller was cancelled
            continue
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)


Flush = Callable[[Batch[Req, Res]], Awaitable[Sequence[Res | BaseException]]]


class GroupCommit(Generic[Req, Res]):
    """A queue of write requests drained in batches by writer tasks (one by default).

    ``flush(batch)`` runs one transaction for the batch (a :class:`Batch`) and returns one entry per
    request, in order: a result, or an exception to raise in that request's caller. When ``flush``
    itself raises, every request of the batch gets that exception, unless the flush answered the batch
    already (:meth:`Batch.answer`). ``max_batch`` bounds one batch.

    ``writers`` > 1 lets that many batches be in flight at once (PostgreSQL, where a batch mostly
    waits on round trips and each writer holds a pooled connection of its own): a request then
    waits for a free writer rather than for the batch before it. ``flush`` must then be correct
    when batches overlap, as it already is against other nodes' writes.
    """

    def __init__(self, flush: Flush[Req, Res], *, max_batch: int = 256, writers: int = 1) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self.writers = writers
        self._pending: list[tuple[Req, asyncio.Future[Res]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, request: Req) -> Res:
        """Queue ``request`` and return its result once its batch committed.

        Raises whatever ``flush`` reported for this request, or :class:`StoreUnavailable`
        after :meth:`close`.
        """
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Res] = loop.create_future()
        self._pending.append((request, future))
        if len(self._tasks) >= self.writers:  # a writer that just ended may still be listed
            self._tasks.difference_update([task for task in self._tasks if task.done()])
        if len(self._tasks) < self.writers:
            task = loop.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def close(self) -> None:
        """Refuse new requests and wait for the batches already queued to finish."""
        self._closed = True
        running = [task for task in self._tasks if not task.done()]
        if running:
            await asyncio.shield(asyncio.gather(*running, return_exceptions=True))

    async def _run(self) -> None:
        # A writer lives while requests are pending and ends when none are left; the next submit
        # starts a new one (no await between the last check and the exit).
        while self._pending:
            batch = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
            live = [(req, fut) for req, fut in batch if not fut.cancelled()]
            if not live:
                continue
            futures = [fut for _, fut in live]
            requests: Batch[Req, Res] = Batch([req for req, _ in live], futures, asyncio.get_running_loop())
            try:
                results = await self._flush(requests)
            except asyncio.CancelledError:
                if not requests.answered:
                    _settle(futures, [StoreUnavailable("store is closing")] * len(futures))
                raise
            except Exception as exc:  # the batch's transaction failed: every caller learns why
                if requests.answered:  # committed and answered; what failed after is the operator's to see
                    log.warning("batch_failed_after_answer", error=f"{type(exc).__name__}: {exc}",
                                requests=len(requests))
                else:
                    _settle(futures, [exc] * len(futures))
                continue
            if not requests.answered:
                _settle(futures, results)
