"""Duplicate storms: K keys, each sent R times by concurrent clients over the copies,
with optional impatient clients (a first attempt that times out and is retried) and
altered duplicates (same key, another body).

Two ways to fire the same plan:

- `fire`: waves released together by a barrier. A wave holds every duplicate of a few
  keys, so the duplicates of one key really are in flight at the same moment, each on
  another copy: the race idempotency has to survive.
- `fire_profile`: closed-loop clients whose number follows a profile over time (ramp up,
  hold, ramp down), each taking the next request of a plan in which a key's duplicates
  are spread over a stretch of time; a `Router` picks the copy per attempt. With an
  autoscaler as the router, one key's duplicates meet copies that are starting, serving
  and draining.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from .told import Told

ORIGINAL_QUANTITY = 1
# A duplicate that is not one: same key, another body. The function must refuse it (422)
# or, if it came first, make it the order and refuse the others.
ALTERED_QUANTITY = 2
# A client gives up after this long at most, and then tells an error, not a wait.
PATIENT_TIMEOUT_SECONDS = 30.0
BARRIER_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class LoadShape:
    keys: int
    repeats: int
    clients: int
    retry_share: float = 0.0  # requests whose first attempt times out on purpose
    impatient_timeout_ms: tuple[float, float] = (1.0, 20.0)
    max_attempts: int = 3
    mismatch_share: float = 0.0  # duplicates that send a different body
    seed: int | None = None
    # None: each key's productId names it (k<index>), so GET /orders alone can count
    # orders per key; a fixed one makes every key's body the same (a later replay knows it).
    product_id: str | None = None

    @property
    def keys_per_wave(self) -> int:
        return max(1, self.clients // self.repeats)

    @property
    def total_requests(self) -> int:
        return self.keys * self.repeats


@dataclass(frozen=True)
class Planned:
    """One request of the plan: which key, which duplicate, where, with which body."""

    key_index: int
    duplicate: int
    target: str  # the copy it is meant for ("" when a Router chooses at send time)
    altered: bool
    impatient_timeout_seconds: float | None  # first attempt's timeout, None = patient


@dataclass
class Attempt:
    """One HTTP exchange. status None: no answer (client timeout or connection error)."""

    status: int | None
    seconds: float
    error: str | None = None


@dataclass
class Result:
    """What one planned request ended with, after its retries."""

    planned: Planned
    attempts: list[Attempt] = field(default_factory=list)
    order_id: str | None = None
    replayed: bool = False
    served_by: str | None = None
    body: bytes = b""
    copy: str | None = None  # the router's name for the copy of the last attempt
    sent_at: float = 0.0  # seconds since the run started
    answered_at: float = 0.0

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]

    @property
    def outcome(self) -> str:
        """created, replayed, 409, 422, or error (no answer, or any other status)."""
        status = self.final.status
        if status == 201:
            return "replayed" if self.replayed else "created"
        if status in (409, 422):
            return str(status)
        return "error"


@dataclass(frozen=True)
class Run:
    profile: str
    key_names: list[str]
    results: list[Result]
    seconds: float

    def acknowledged(self) -> dict[tuple[str, str], str]:
        """(profile, key) -> the order id its first 201 named: what the auditor checks."""
        return self.told().orders()

    def told(self) -> Told:
        """What the clients were told, in the order the answers came."""
        told = Told()
        for result in sorted(self.results, key=lambda r: r.answered_at):
            if result.order_id is not None:
                told.acknowledge((self.profile, self.key_names[result.planned.key_index]), result.order_id, result.body)
        return told


class Router(Protocol):
    def route(self, planned: Planned) -> AbstractContextManager[tuple[str, str]]:
        """Hold until a copy can take the request; yields (base URL, copy name) while it is in flight."""


class FixedTargets:
    """Each planned request goes where the plan put it."""

    def route(self, planned: Planned) -> AbstractContextManager[tuple[str, str]]:
        return _fixed(planned.target)


@contextmanager
def _fixed(target: str) -> Iterator[tuple[str, str]]:
    yield target, target


def product_id(key_index: int) -> str:
    """The order's productId names its key, so GET /orders alone can count orders per key."""
    return f"k{key_index}"


def body_for(planned: Planned, fixed_product_id: str | None = None) -> dict[str, Any]:
    quantity = ALTERED_QUANTITY if planned.altered else ORIGINAL_QUANTITY
    return {"productId": fixed_product_id or product_id(planned.key_index), "productQuantity": quantity}


def plan(shape: LoadShape, targets: list[str]) -> list[Planned]:
    """Every duplicate of key k goes to a different copy where there are enough of them
    (copy (k + d) mod N), so a key's duplicates meet on several copies at once."""
    chooser = random.Random(shape.seed)
    planned = []
    for key_index in range(shape.keys):
        for duplicate in range(shape.repeats):
            impatient = chooser.random() < shape.retry_share
            planned.append(Planned(
                key_index=key_index,
                duplicate=duplicate,
                target=targets[(key_index + duplicate) % len(targets)] if targets else "",
                # The first duplicate keeps the original body, so an altered one is the
                # exception in every key (unless it wins the race: then the others are).
                altered=duplicate > 0 and chooser.random() < shape.mismatch_share,
                impatient_timeout_seconds=(
                    chooser.uniform(*shape.impatient_timeout_ms) / 1000 if impatient else None
                ),
            ))
    return planned


def spread_over_time(planned: list[Planned], stretch: int) -> list[Planned]:
    """The first half of a key's duplicates go out together (they race each other); the
    rest trickle out over the next `stretch` keys' worth of requests, when copies may
    have come or gone."""
    repeats = 1 + max((p.duplicate for p in planned), default=0)
    racing = max(1, repeats // 2)

    def position(p: Planned) -> float:
        if p.duplicate < racing:
            return p.key_index
        return p.key_index + (p.duplicate - racing + 1) * stretch / max(1, repeats - racing)

    return sorted(planned, key=lambda p: (position(p), p.duplicate))


def new_run_names(keys: int) -> tuple[str, list[str]]:
    """A profile of its own per run, so every count afterwards is this run's own."""
    run_id = uuid.uuid4().hex[:10]
    return f"demo-{run_id}", [f"{run_id}-{k}" for k in range(keys)]


def fire(
    shape: LoadShape, targets: list[str], *, headers: dict[str, str] | None = None,
    on_answer: Callable[[], None] = lambda: None, profile: str | None = None,
) -> Run:
    """Send the whole plan in barrier waves; `headers` go on every request (a Host for a
    Knative route reached through a port-forward); `on_answer` is called once per
    finished request."""
    new_profile, key_names = new_run_names(shape.keys)
    profile = profile or new_profile
    planned = plan(shape, targets)
    wave_size = shape.keys_per_wave * shape.repeats
    waves = [planned[start:start + wave_size] for start in range(0, len(planned), wave_size)]
    results: list[Result] = []
    lock = threading.Lock()
    barrier = threading.Barrier(wave_size)
    router = FixedTargets()
    started = time.perf_counter()

    def client(slot: int) -> None:
        sessions: dict[str, requests.Session] = {}  # keep-alive per copy
        jitter = random.Random(None if shape.seed is None else shape.seed + slot)
        for wave in waves:
            try:
                barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
            except threading.BrokenBarrierError:
                pass  # a stuck client must not stop the others: go on unsynchronised
            if slot >= len(wave):
                continue
            result = _send(wave[slot], router, sessions, profile, key_names, shape, jitter, headers, started,
                           retry_connection_errors=False)
            with lock:
                results.append(result)
            on_answer()

    _run_threads(client, wave_size)
    return Run(profile, key_names, results, time.perf_counter() - started)


@dataclass(frozen=True)
class ClientProfile:
    """How many clients are active over time: (seconds since start, clients) points,
    joined by straight lines; 0 clients at the last point ends the run."""

    points: tuple[tuple[float, int], ...]

    def clients_at(self, seconds: float) -> int:
        for (t0, c0), (t1, c1) in zip(self.points, self.points[1:]):
            if t0 <= seconds < t1:
                return round(c0 + (c1 - c0) * (seconds - t0) / (t1 - t0)) if t1 > t0 else c1
        return 0

    @property
    def peak(self) -> int:
        return max(clients for _, clients in self.points)

    @property
    def seconds(self) -> float:
        return self.points[-1][0]


def fire_profile(
    shape: LoadShape, router: Router, clients: ClientProfile, *, profile: str, key_names: list[str],
    headers: dict[str, str] | None = None, on_answer: Callable[[], None] = lambda: None,
    clock_started: float | None = None, key_offset: int = 0, spread_keys: int = 60,
) -> tuple[list[Result], float]:
    """Closed-loop clients, client n active while the profile says at least n+1 are,
    taking the next request of the time-spread plan until the profile ends (requests
    left over are not sent). Keys are `key_names[key_offset:]`. Returns the results and
    when (on the run's clock) the profile began, after the plan was made."""
    planned = spread_over_time(plan(shape, []), stretch=spread_keys)
    planned = [Planned(p.key_index + key_offset, p.duplicate, p.target, p.altered, p.impatient_timeout_seconds)
               for p in planned]
    queue = iter(planned)
    lock = threading.Lock()
    results: list[Result] = []
    run_started = time.perf_counter() if clock_started is None else clock_started
    profile_started = time.perf_counter()

    def client(slot: int) -> None:
        sessions: dict[str, requests.Session] = {}
        jitter = random.Random(None if shape.seed is None else shape.seed + slot)
        while (elapsed := time.perf_counter() - profile_started) < clients.seconds:
            if slot >= clients.clients_at(elapsed):
                time.sleep(0.02)
                continue
            with lock:
                planned_next = next(queue, None)
            if planned_next is None:
                return
            result = _send(planned_next, router, sessions, profile, key_names, shape, jitter, headers, run_started,
                           retry_connection_errors=True)
            with lock:
                results.append(result)
            on_answer()

    _run_threads(client, clients.peak)
    return results, profile_started - run_started


def _run_threads(client: Callable[[int], None], count: int) -> None:
    threads = [threading.Thread(target=client, args=(slot,), daemon=True) for slot in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _send(
    planned: Planned, router: Router, sessions: dict[str, requests.Session], profile: str,
    key_names: list[str], shape: LoadShape, jitter: random.Random, headers: dict[str, str] | None,
    run_started: float, *, retry_connection_errors: bool,
) -> Result:
    """One planned request with its retries: an impatient first attempt may time out,
    then the client retries (same key, same body) with patience. With
    `retry_connection_errors` (autoscaled copies come and go) a refused or reset attempt
    is retried too, as Knative's activator retries; otherwise it is the request's end."""
    result = Result(planned, sent_at=time.perf_counter() - run_started)
    request_headers = {"Idempotency-Key": key_names[planned.key_index], "X-Profile-Id": profile, **(headers or {})}
    for attempt in range(shape.max_attempts):
        timeout = planned.impatient_timeout_seconds if attempt == 0 and planned.impatient_timeout_seconds else None
        with router.route(planned) as (url, copy):
            session = sessions.setdefault(url, requests.Session())
            result.copy = copy
            started = time.perf_counter()
            try:
                response = session.post(url + "/orders", json=body_for(planned, shape.product_id), headers=request_headers,
                                        timeout=timeout or PATIENT_TIMEOUT_SECONDS)
            except requests.Timeout:
                result.attempts.append(Attempt(None, time.perf_counter() - started, "client timeout"))
                sessions.pop(url, None)
                error = True
            except requests.ConnectionError as exc:
                result.attempts.append(Attempt(None, time.perf_counter() - started, _failure(exc)))
                sessions.pop(url, None)
                if not retry_connection_errors:
                    break
                error = True
            except requests.RequestException as exc:
                result.attempts.append(Attempt(None, time.perf_counter() - started, _failure(exc)))
                sessions.pop(url, None)
                break
            else:
                error = False
        if error:
            time.sleep(jitter.uniform(0, 0.05))  # a client's back-off before its retry
            continue
        result.attempts.append(Attempt(response.status_code, time.perf_counter() - started))
        result.served_by = response.headers.get("X-Served-By")
        result.body = response.content
        if response.status_code == 201:
            result.order_id = response.json().get("orderId")
            result.replayed = response.headers.get("Idempotent-Replayed") == "true"
        break
    result.answered_at = time.perf_counter() - run_started
    return result


def _failure(exc: requests.RequestException) -> str:
    """The exception's name and its innermost cause (refused, reset, closed without an
    answer), which tells a copy that died from a connection dropped in passing."""
    cause: BaseException = exc
    while True:
        inner = getattr(cause, "reason", None) or (cause.args[-1] if cause.args else None)
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    return type(exc).__name__ if cause is exc else f"{type(exc).__name__} ({type(cause).__name__}: {cause})"[:200]
