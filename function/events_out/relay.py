"""Moving order events from the outbox to K_SINK: right after each commit, and in a
sweep every OUTBOX_RETRY_SECONDS (the first at start-up, another on each ping event).

Nothing here waits in a request's path: the publish after a commit is a task on the
loop, and the client's answer has gone by the time it POSTs. Every failure leaves the
event pending in PostgreSQL, where some copy's sweep finds it again: at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Awaitable

from .. import logs, metrics
from ..database import DatabaseUnavailable
from ..labels import PublishFailure
from ..orders import Order
from .outbox import BATCH_SIZE, OutboxStore
from .publisher import Publisher

if TYPE_CHECKING:
    from ..tracing import Tracing

# One sweep publishes batch after batch while they keep coming back full, for at most
# this long. A ping waits for a sweep under way and then its own: 2 x 10 s (plus a
# POST bound) stays inside the Service's timeoutSeconds (30 s).
SWEEP_LIMIT_SECONDS = 10.0
NO_SPAN: contextlib.nullcontext[Any] = contextlib.nullcontext()


class Relay:
    def __init__(
        self, store: OutboxStore, publisher: Publisher, retry_seconds: float, tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._retry_seconds = retry_seconds
        self._tracing = tracing
        self._sweeper: asyncio.Task[None] | None = None
        self._sweeping = asyncio.Lock()  # one sweep per copy at a time: the timer's or a ping's
        self._in_flight: set[asyncio.Task[None]] = set()
        self._confirmations: list[str] = []  # delivered right after commit, not yet deleted

    def start(self) -> None:
        """The periodic sweep, first run at once: a copy starting drains what others left."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        """On shutdown: let the publishes already under way finish (each is bounded)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        await self._publisher.close()

    # --- right after a commit -----------------------------------------------------------

    def announce(self, order: Order) -> None:
        """Publish an order this copy created, once its statement (which recorded the
        event) has committed; the request's answer does not wait for it."""
        self._background(self._publish_committed(order))

    async def _publish_committed(self, order: Order) -> None:
        try:
            if await self._post(order) is None:
                self._confirm(order.order_id)
            else:
                await self._store.failed([order.order_id])
        except DatabaseUnavailable:
            pass  # still pending: its lease runs out and a sweep sends it
        except Exception:  # still pending too; said once, not left to asyncio's "never retrieved"
            logs.error("publishing an order event failed", orderId=order.order_id)

    def _confirm(self, order_id: str) -> None:
        """Deletes of delivered rows that arrive together go out as one statement: the
        first confirmation starts a flush, which takes whatever has gathered meanwhile."""
        self._confirmations.append(order_id)
        if len(self._confirmations) == 1:
            self._background(self._flush_confirmations())

    async def _flush_confirmations(self) -> None:
        while self._confirmations:
            order_ids = self._confirmations[:]
            try:
                await self._store.delivered(order_ids)
            except DatabaseUnavailable:
                pass  # delivered, still recorded: a sweep sends them again (at least once)
            except Exception:
                logs.error("recording delivered order events failed", events=len(order_ids))
            del self._confirmations[: len(order_ids)]

    def _background(self, work: Awaitable[None]) -> None:
        self.start()  # a server that runs no lifespan still gets its sweep
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    # --- the sweep ----------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except DatabaseUnavailable:
                pass  # PostgreSQL is away; the events wait there for the next sweep
            except Exception:
                logs.error("outbox sweep failed")
            await asyncio.sleep(self._retry_seconds)

    async def sweep(self) -> int:
        """Publish the due events, a batch at a time; the number delivered."""
        async with self._sweeping:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SWEEP_LIMIT_SECONDS
            delivered_count = 0
            while True:
                orders = await self._store.claim(BATCH_SIZE)
                if not orders:
                    break
                with NO_SPAN if self._tracing is None else self._tracing.span("outbox-sweep") as span:
                    failures = await asyncio.gather(*(self._post(order) for order in orders))
                    delivered = [order.order_id for order, failure in zip(orders, failures) if failure is None]
                    failed = [order.order_id for order, failure in zip(orders, failures) if failure is not None]
                    if span is not None:
                        span.set_attribute("orders.outbox.batch_size", len(orders))
                        span.set_attribute("orders.outbox.delivered", len(delivered))
                    await self._store.delivered(delivered)
                    await self._store.failed(failed)
                delivered_count += len(delivered)
                # A short batch was all that was due; one with no delivery means the sink
                # is failing: wait for the next period rather than hammer it.
                if len(orders) < BATCH_SIZE or not delivered or loop.time() > deadline:
                    break
            backlog = await self._store.backlog()
            metrics.OUTBOX_PENDING.set(backlog.pending)
            metrics.OUTBOX_OLDEST_PENDING.set(backlog.oldest_seconds)
            return delivered_count

    # --- one POST -----------------------------------------------------------------------

    async def _post(self, order: Order) -> PublishFailure | None:
        if self._tracing is None:
            failure = await self._publisher.post(order)
        else:
            with self._tracing.publish_span(order.order_id) as span:
                failure = await self._publisher.post(order, self._tracing.context_headers(span))
                if failure is not None:
                    self._tracing.failed(span, failure.value)
        if failure is None:
            metrics.OUTBOX_PUBLISHED.inc()
        else:
            metrics.OUTBOX_PUBLISH_FAILED[failure].inc()
        return failure
