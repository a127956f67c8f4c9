"""Group commit: many concurrent requests' writes in one transaction, by one writer task.

Why: with an async driver every statement is a round trip between the event loop and the
driver (aiosqlite's thread, or the PostgreSQL socket), and every transaction ends in a commit.
Enqueue is the hot write path (DESIGN §3.1: "response within milliseconds"), so instead of one
transaction per request, requests line up here and one writer task flushes whatever is waiting
as one batch: a few statements and one commit for the lot. Nothing waits for a batch to fill up:
the writer takes all that is pending, and requests that arrive while a flush runs form the next
batch, so an idle hub answers a lone request as fast as before and a busy one amortises.

Each caller gets its own result (or its own exception) only after the flush that holds its
request has committed, so an answer always means "durable".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from wahub.domain.errors import StoreUnavailable

Req = TypeVar("Req")
Res = TypeVar("Res")

Flush = Callable[[Sequence[Req]], Awaitable[Sequence[Res | BaseException]]]


class GroupCommit(Generic[Req, Res]):
    """A queue of write requests drained in batches by writer tasks (one by default).

    ``flush(batch)`` runs one transaction for the batch and returns one entry per request, in
    order: a result, or an exception to raise in that request's caller. When ``flush`` itself
    raises, every request of the batch gets that exception. ``max_batch`` bounds one batch.

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
            try:
                results = await self._flush([req for req, _ in live])
            except asyncio.CancelledError:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(StoreUnavailable("store is closing"))
                raise
            except Exception as exc:  # the batch's transaction failed: every caller learns why
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
