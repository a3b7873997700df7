"""A local stand-in for Knative's autoscaler, not a reimplementation of it.

What it keeps from Knative: copies started from the Procfile's `web:` line, scaled from
zero; requests held while no copy is ready (as the activator holds them) and routed to
the least busy ready copy; a copy added while the in-flight requests per copy exceed
`target`; a copy removed after `scale_down_delay_seconds` of less demand, with SIGTERM
while its last requests are still in flight (it stops getting new ones first, as a pod
leaves the endpoints), down to `min_scale`. What it leaves out: the stable and panic
windows' maths, target utilisation, the queue-proxy, pod scheduling and image pulls.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests

from devserver.copies import FunctionCopy
from devserver.stack import LocalStack
from devserver.waiting import NotReady
from loadgen.exposition import outcome_counts, scrape
from loadgen.storm import Planned

TICK_SECONDS = 0.1
SCRAPE_SECONDS = 0.5  # each ready copy's /metrics outcome counters, for the timeline
# A scale-down waits this much longer for a copy with requests in flight to drain.
DRAIN_PATIENCE_SECONDS = 1.0


@dataclass(frozen=True)
class Knobs:
    """Named after the Knative annotations `autoscaling.knative.dev/<name>`."""

    target: float = 4.0  # `target`: in-flight requests per copy (metric: concurrency)
    scale_down_delay_seconds: float = 2.0  # `scale-down-delay`
    min_scale: int = 0  # `min-scale`: 0 lets it scale to zero
    max_scale: int = 4  # `max-scale`
    window_seconds: float = 1.0  # demand is averaged over this (Knative's stable window is 60 s)


@dataclass
class ScaledCopy:
    name: str
    copy: FunctionCopy
    started_at: float
    ready_at: float | None = None
    drained_at: float | None = None  # SIGTERM sent
    exited_at: float | None = None
    in_flight: int = 0
    in_flight_at_drain: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def state(self) -> str:
        if self.exited_at is not None:
            return "gone"
        if self.drained_at is not None:
            return "draining"
        return "ready" if self.ready_at is not None else "starting"


@dataclass(frozen=True)
class Sample:
    seconds: float
    starting: int
    ready: int
    draining: int
    in_flight: int  # requests on copies
    held: int  # requests waiting for a ready copy
    per_copy: dict[str, int]


@dataclass(frozen=True)
class Event:
    seconds: float
    kind: str  # "cold start", "ready", "drain", "exit"
    copy: str
    detail: str = ""


class Autoscaler:
    """Routes requests (`route`) and scales copies of `stack` by their in-flight count."""

    def __init__(self, stack: LocalStack, knobs: Knobs) -> None:
        self.stack = stack
        self.knobs = knobs
        self.copies: list[ScaledCopy] = []
        self.samples: list[Sample] = []
        self.events: list[Event] = []
        # (seconds, seconds since the previous scrape, outcomes counted in between)
        self.outcome_samples: list[tuple[float, float, Counter[str]]] = []
        self.held_seconds: list[float] = []
        self._held = 0
        self._turn = 0
        self._condition = threading.Condition()
        self._stopping = threading.Event()
        self._demand: deque[tuple[float, int]] = deque()
        self._below_since: float | None = None
        self._started = time.perf_counter()
        self._threads = [threading.Thread(target=self._tick_loop, daemon=True),
                         threading.Thread(target=self._scrape_loop, daemon=True)]

    def now(self) -> float:
        return time.perf_counter() - self._started

    def start(self, started: float | None = None) -> Autoscaler:
        self._started = started if started is not None else time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._condition:
            alive = [c for c in self.copies if c.state != "gone"]
        for scaled in alive:
            scaled.copy.stop(timeout_seconds=10)

    # -- routing (the activator's part) ------------------------------------------------

    @contextmanager
    def route(self, planned: Planned) -> Iterator[tuple[str, str]]:
        with self._condition:
            chosen = self._ready_copy()
            if chosen is None:
                held_from = time.perf_counter()
                self._held += 1
                self._scale_to(max(1, self._alive_count()))  # a held request wakes a cold copy
                while (chosen := self._ready_copy()) is None and not self._stopping.is_set():
                    self._condition.wait(0.05)
                self._held -= 1
                self.held_seconds.append(time.perf_counter() - held_from)
                if chosen is None:
                    raise RuntimeError("the autoscaler stopped while a request was held")
            chosen.in_flight += 1
        try:
            yield chosen.copy.url, chosen.name
        finally:
            with self._condition:
                chosen.in_flight -= 1

    def _ready_copy(self) -> ScaledCopy | None:
        ready = [c for c in self.copies if c.state == "ready"]
        if not ready:
            return None
        self._turn += 1
        fewest = min(c.in_flight for c in ready)
        least_busy = [c for c in ready if c.in_flight == fewest]
        return least_busy[self._turn % len(least_busy)]

    # -- scaling (the autoscaler's part) -----------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            with self._condition:
                self._tick()

    def _tick(self) -> None:
        now = self.now()
        in_flight = sum(c.in_flight for c in self.copies)
        self._demand.append((now, in_flight + self._held))
        while self._demand and self._demand[0][0] < now - self.knobs.window_seconds:
            self._demand.popleft()
        average = sum(d for _, d in self._demand) / len(self._demand)
        wanted = math.ceil(average / self.knobs.target - 1e-9)
        if self._held:
            wanted = max(wanted, 1)
        wanted = min(self.knobs.max_scale, max(self.knobs.min_scale, wanted))
        states = Counter(c.state for c in self.copies)
        self.samples.append(Sample(now, states["starting"], states["ready"], states["draining"], in_flight,
                                   self._held, {c.name: c.in_flight for c in self.copies if c.state != "gone"}))
        alive = self._alive_count()
        if wanted > alive:
            self._below_since = None
            self._scale_to(wanted)
        elif wanted < alive:
            if self._below_since is None:
                self._below_since = now
            elif now - self._below_since >= self.knobs.scale_down_delay_seconds and self._drain_one():
                self._below_since = now  # one copy per delay, as demand falls step by step
        else:
            self._below_since = None

    def _alive_count(self) -> int:
        return sum(1 for c in self.copies if c.state in ("starting", "ready"))

    def _scale_to(self, wanted: int) -> None:
        for _ in range(min(wanted, self.knobs.max_scale) - self._alive_count()):
            name = f"copy-{len(self.copies) + 1}"
            copy = self.stack.start_copy(wait=False)
            scaled = ScaledCopy(name, copy, started_at=self.now())
            self.copies.append(scaled)
            self.events.append(Event(scaled.started_at, "cold start", name))
            threading.Thread(target=self._await_ready, args=(scaled,), daemon=True).start()

    def _await_ready(self, scaled: ScaledCopy) -> None:
        try:
            scaled.copy.wait_ready()
        except NotReady as failure:
            with self._condition:
                scaled.exited_at = self.now()
                self.events.append(Event(scaled.exited_at, "exit", scaled.name, f"never ready: {failure}"))
            return
        with self._condition:
            scaled.ready_at = self.now()
            self.events.append(Event(scaled.ready_at, "ready", scaled.name,
                                     f"{(scaled.ready_at - scaled.started_at) * 1000:.0f} ms after start"))
            self._condition.notify_all()

    def _drain_one(self) -> bool:
        """The ready copy with the most requests in flight (the case worth showing; after
        DRAIN_PATIENCE_SECONDS the oldest ready copy): it leaves the routing at once, then gets
        SIGTERM with whatever it still has in flight, and finishes that before it exits."""
        ready = [c for c in self.copies if c.state == "ready"]
        busy = [c for c in ready if c.in_flight]
        overdue = self._below_since is not None and (
            self.now() - self._below_since >= self.knobs.scale_down_delay_seconds + DRAIN_PATIENCE_SECONDS)
        if not ready or not (busy or overdue):
            return False
        scaled = max(busy, key=lambda c: c.in_flight) if busy else min(ready, key=lambda c: c.started_at)
        scaled.drained_at = self.now()
        scaled.in_flight_at_drain = scaled.in_flight
        self.events.append(Event(scaled.drained_at, "drain", scaled.name, f"{scaled.in_flight} in flight"))
        threading.Thread(target=self._drain, args=(scaled,), daemon=True).start()
        return True

    def _drain(self, scaled: ScaledCopy) -> None:
        self._scrape(scaled)  # its last counters, before it stops answering
        scaled.copy.stop(timeout_seconds=30)
        with self._condition:
            scaled.exited_at = self.now()
            self.events.append(Event(scaled.exited_at, "exit", scaled.name,
                                     f"exit status {scaled.copy.process.returncode if scaled.copy.process else '?'}"))

    def wait_for_copies(self, count: int, timeout_seconds: float) -> bool:
        """Until exactly `count` copies are alive or draining (0: scaled to zero)."""
        deadline = time.perf_counter() + timeout_seconds
        while time.perf_counter() < deadline:
            with self._condition:
                if sum(1 for c in self.copies if c.state != "gone") == count:
                    return True
            time.sleep(TICK_SECONDS)
        return False

    # -- the copies' own counters, for the timeline ------------------------------------

    def _scrape_loop(self) -> None:
        previous = self.now()
        while not self._stopping.wait(SCRAPE_SECONDS):
            with self._condition:
                ready = [c for c in self.copies if c.state == "ready"]
            before = self._total_outcomes()
            for scaled in ready:
                self._scrape(scaled)
            after, now = self._total_outcomes(), self.now()
            self.outcome_samples.append((now, now - previous, after - before))
            previous = now

    def _total_outcomes(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for scaled in list(self.copies):
            total.update(scaled.outcomes)
        return total

    def _scrape(self, scaled: ScaledCopy) -> None:
        try:
            text = scrape(scaled.copy.url, timeout_seconds=2)
        except requests.RequestException:
            return
        scaled.outcomes = outcome_counts(text)
