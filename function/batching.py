"""Group commit: requests that wait for PostgreSQL at the same moment share one unit of work.

A request queues its item and awaits its own future. One *flusher* task at a time waits
for a turn (at most `max_in_flight` batches run at once) and a pooled connection on
behalf of everything queued; when it has both, it takes what is queued (up to
`max_size`), starts the next flusher if more is left, and runs the batch in one unit of
work. Nobody waits for company: with a turn free and nobody queued, the flusher takes a
batch of one at once, so an idle copy behaves as before. Under load, the creates that
queue behind the batches in flight go together in the next one.

Every request keeps its own fate. Its wait for a connection is bounded as before (an item
not taken before its deadline fails with `ALL_BUSY`); a cancelled request only cancels its
own future (the batch is the flusher's task, so it runs on for the others, and an item
whose request is gone before it is taken is skipped). A batch that PostgreSQL cannot run
now (down, hung, too slow) fails each request with its own `DatabaseUnavailable`. A batch
of several that failed otherwise, or waited past lock_timeout for another transaction's
lock (a row of it may be held by a transaction that hangs), is retried one item at a time
on the same connection, so a row one request could not write never fails another. `Database.on_connection` keeps its retry-once rule for a
stale pooled connection, for the batch as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Generic, Sequence, TypeVar

from . import metrics
from .database import ALL_BUSY, Database, DatabaseUnavailable, Session

Item = TypeVar("Item")
Result = TypeVar("Result")

# What a batch does: one unit of work on one connection, a result per item, in order.
BatchWork = Callable[[Session, Sequence[Item]], Sequence[Result]]


@dataclass
class _Queued(Generic[Item, Result]):
    item: Item
    answer: asyncio.Future[Result]
    deadline: float  # loop time after which waiting for a connection gives up
    asked: float = field(default_factory=time.perf_counter)


class InsertBatcher(Generic[Item, Result]):
    """One per worker process, like the pool it lends connections from."""

    def __init__(self, database: Database, work: BatchWork[Item, Result], *, max_size: int, max_in_flight: int) -> None:
        self._database = database
        self._work = work
        self._max_size = max_size
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._queue: deque[_Queued[Item, Result]] = deque()
        self._flusher_waiting = False  # a flusher waits for a connection for what is queued
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done: the loop keeps weak ones

    async def submit(self, item: Item) -> Result:
        """`item`'s own result (or its own error), whichever batch it ends up in."""
        loop = asyncio.get_running_loop()
        queued: _Queued[Item, Result] = _Queued(item, loop.create_future(), loop.time() + self._database.wait_seconds)
        self._queue.append(queued)
        metrics.DB_POOL_WAITING.inc()
        if not self._flusher_waiting:
            self._start_flusher(loop)
        # Cancelling this request cancels its future only: never the flusher, nor the batch.
        return await queued.answer

    def _start_flusher(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flusher_waiting = True
        # A context of its own: the batch belongs to no single request's trace.
        task = loop.create_task(self._flush(), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        oldest = self._queue[0].deadline if self._queue else loop.time()
        try:
            async with self._turn(max(0.0, oldest - loop.time())):
                self._flusher_waiting = False
                batch = self._take()
                if self._queue:  # more than one batch queued: the next waits for the next connection
                    self._start_flusher(loop)
                if batch:
                    await self._run(batch)
        except DatabaseUnavailable:  # no connection came free before the oldest deadline
            self._flusher_waiting = False
            self._expire(loop)
            if self._queue:
                self._start_flusher(loop)

    @contextlib.asynccontextmanager
    async def _turn(self, wait_seconds: float) -> AsyncIterator[None]:
        """One of `max_in_flight` batches, on a pooled connection, within `wait_seconds`."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(wait_seconds):
                await self._in_flight.acquire()
        except TimeoutError:
            raise DatabaseUnavailable(ALL_BUSY) from None
        try:
            left = max(0.0, wait_seconds - (time.monotonic() - started))
            async with self._database.connection_slot(left, counted=False):
                yield
        finally:
            self._in_flight.release()

    def _take(self) -> list[_Queued[Item, Result]]:
        batch: list[_Queued[Item, Result]] = []
        while self._queue and len(batch) < self._max_size:
            queued = self._queue.popleft()
            self._dequeued(queued)
            if not queued.answer.done():  # its request was cancelled meanwhile: nothing to write
                batch.append(queued)
        return batch

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the requests whose wait for a connection is over, as `Database.run` would."""
        now = loop.time()
        while self._queue and self._queue[0].deadline <= now + 0.001:
            queued = self._queue.popleft()
            self._dequeued(queued)
            _fail(queued, DatabaseUnavailable(ALL_BUSY))

    @staticmethod
    def _dequeued(queued: _Queued[Item, Result]) -> None:
        metrics.DB_POOL_WAITING.dec()
        metrics.DB_POOL_WAIT.observe(time.perf_counter() - queued.asked)

    async def _run(self, batch: list[_Queued[Item, Result]]) -> None:
        metrics.INSERT_BATCH_CREATES.observe(len(batch))
        try:
            await self._answer(batch)
        finally:  # whatever went wrong here, no request may wait for ever
            for queued in batch:
                _fail(queued, RuntimeError("the batch ended without an answer for this request"))

    async def _answer(self, batch: list[_Queued[Item, Result]]) -> None:
        items = [queued.item for queued in batch]
        try:
            results = await self._database.on_connection(lambda session: self._work(session, items))
        except DatabaseUnavailable as exc:
            if exc.blocked_by_lock and len(batch) > 1:  # perhaps one row's lock: find whose
                for queued in batch:
                    await self._run([queued])
                return
            for queued in batch:  # each would have failed alone: each gets its own error
                error = DatabaseUnavailable(exc.detail)
                error.__cause__ = exc
                _fail(queued, error)
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            for queued in batch:  # nothing of the batch was written: find whose row it was
                await self._run([queued])
            return
        for queued, result in zip(batch, results, strict=True):
            if not queued.answer.done():
                queued.answer.set_result(result)


def _fail(queued: _Queued[Item, Result], error: BaseException) -> None:
    if not queued.answer.done():
        queued.answer.set_exception(error)
