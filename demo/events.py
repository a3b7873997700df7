"""The order events of an autoscaled run: a local sink the copies publish to (K_SINK),
one outage of it during the first wave, and the tally at the end: every order's event
arrived, under one id, however the copies came and went.

With every copy scaled to zero at the end, events still pending are what a Knative
PingSource is for: the demo does what it does (a cold copy, a ping event, then a drain).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import requests

from devserver.sink import EventSink
from devserver.stack import LocalStack
from devserver.waiting import NotReady, wait_until

RETRY_SECONDS = 1.0  # OUTBOX_RETRY_SECONDS of the demo's copies: a short run, short retries
# The sink is down from this many seconds into the first wave, for this long: copies
# scale up and down meanwhile, and all of them retry.
OUTAGE_STARTS_SECONDS, OUTAGE_SECONDS = 4.0, 5.0
PING_TYPE = "dev.knative.sources.ping"
# After the run: the longest an event may still wait (its backoff, then one sweep).
SETTLE_SECONDS = 30.0


class EventsOut:
    def __init__(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="orders-sink-"))
        self.sink = EventSink(self._workdir)
        self.outage_at: tuple[float, float] | None = None  # seconds since the run started
        self.pinged = False
        self._timers: list[threading.Timer] = []

    @property
    def copy_env(self) -> dict[str, str]:
        return {"K_SINK": self.sink.url, "OUTBOX_RETRY_SECONDS": str(RETRY_SECONDS)}

    def __enter__(self) -> EventsOut:
        self.sink.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for timer in self._timers:
            timer.cancel()
        self.sink.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def schedule_outage(self, clock_started: float) -> None:
        """Stop the sink (its port closed) a few seconds from now, and start it again."""
        def down() -> None:
            self.sink.stop()
            begun = time.perf_counter() - clock_started
            self.outage_at = (round(begun, 2), round(begun + OUTAGE_SECONDS, 2))

        self._timers = [threading.Timer(OUTAGE_STARTS_SECONDS, down),
                        threading.Timer(OUTAGE_STARTS_SECONDS + OUTAGE_SECONDS, self.sink.start)]
        for timer in self._timers:
            timer.start()

    def publish_the_rest(self, stack: LocalStack, pending: Callable[[], int]) -> None:
        """With no copy left, what is pending waits for a wake-up: a cold copy and a ping."""
        for timer in self._timers:
            timer.join()
        if pending() == 0:
            return
        woken = stack.start_copy()
        try:
            requests.post(woken.url + "/", data=b"{}", timeout=30, headers={
                "ce-specversion": "1.0", "ce-type": PING_TYPE, "ce-source": "/demo/ping",
                "ce-id": f"ping-{time.time_ns()}", "content-type": "application/json"})
            self.pinged = True
            try:
                wait_until(lambda: pending() == 0, what="the outbox drained", timeout_seconds=SETTLE_SECONDS)
            except NotReady:
                pass  # reported: the figures show which orders have no event
        finally:
            woken.stop()

    def figures(self, order_ids: set[str]) -> dict[str, Any]:
        deliveries = self.sink.deliveries()
        ids = Counter(delivery["id"] for delivery in deliveries)
        return {
            "eventsReceived": len(deliveries),
            "distinctEventIds": len(ids),
            "duplicateDeliveries": sum(count - 1 for count in ids.values()),
            "ordersWithoutEvent": len(order_ids - set(ids)),
            "eventsForNoOrder": len(set(ids) - order_ids),
            "sinkOutageSeconds": list(self.outage_at) if self.outage_at else None,
            "pingAfterScaleToZero": self.pinged,
        }
