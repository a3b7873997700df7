"""The load shape and its firing: K keys, each sent R times at once by concurrent clients,
spread over the copies, with optional impatient clients and altered duplicates.

Requests go out in waves released together by a barrier: a wave holds every duplicate of
a few keys, so the duplicates of one key really are in flight at the same moment, on
different copies, which is the case idempotency has to survive.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

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
    target: str
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


def product_id(key_index: int) -> str:
    """The order's productId names its key, so GET /orders alone can count orders per key."""
    return f"k{key_index}"


def body_for(planned: Planned) -> dict[str, Any]:
    quantity = ALTERED_QUANTITY if planned.altered else ORIGINAL_QUANTITY
    return {"productId": product_id(planned.key_index), "productQuantity": quantity}


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
                target=targets[(key_index + duplicate) % len(targets)],
                # The first duplicate keeps the original body, so an altered one is the
                # exception in every key (unless it wins the race: then the others are).
                altered=duplicate > 0 and chooser.random() < shape.mismatch_share,
                impatient_timeout_seconds=(
                    chooser.uniform(*shape.impatient_timeout_ms) / 1000 if impatient else None
                ),
            ))
    return planned


def fire(
    shape: LoadShape, targets: list[str], *, headers: dict[str, str] | None = None,
    on_answer: Callable[[], None] = lambda: None,
) -> Run:
    """Send the whole plan; `headers` go on every request (a Host for a Knative route
    reached through a port-forward); `on_answer` is called once per finished request."""
    run_id = uuid.uuid4().hex[:10]
    profile = f"demo-{run_id}"  # unique per run, so every count below is this run's own
    key_names = [f"{run_id}-{k}" for k in range(shape.keys)]
    planned = plan(shape, targets)
    wave_size = shape.keys_per_wave * shape.repeats
    waves = [planned[start:start + wave_size] for start in range(0, len(planned), wave_size)]
    results: list[Result] = []
    lock = threading.Lock()
    barrier = threading.Barrier(wave_size)

    def client(slot: int) -> None:
        sessions = {target: requests.Session() for target in targets}  # keep-alive per copy
        jitter = random.Random(None if shape.seed is None else shape.seed + slot)
        for wave in waves:
            try:
                barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
            except threading.BrokenBarrierError:
                pass  # a stuck client must not stop the others: go on unsynchronised
            if slot >= len(wave):
                continue
            result = _send(wave[slot], sessions[wave[slot].target], profile, key_names, shape, jitter,
                           headers or {})
            with lock:
                results.append(result)
            on_answer()
        for session in sessions.values():
            session.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(slot,), daemon=True) for slot in range(wave_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Run(profile, key_names, results, time.perf_counter() - started)


def _send(
    planned: Planned, session: requests.Session, profile: str, key_names: list[str],
    shape: LoadShape, jitter: random.Random, extra_headers: dict[str, str],
) -> Result:
    """The request and its retries: a timed-out attempt is retried with the same key and
    body, as a real client does, while the server may still be finishing the first."""
    result = Result(planned)
    headers = {**extra_headers, "Idempotency-Key": key_names[planned.key_index], "X-Profile-Id": profile}
    body = body_for(planned)
    for attempt_number in range(shape.max_attempts):
        timeout = planned.impatient_timeout_seconds if attempt_number == 0 else None
        started = time.perf_counter()
        try:
            response = session.post(
                planned.target + "/orders", json=body, headers=headers,
                timeout=timeout or PATIENT_TIMEOUT_SECONDS,
            )
        except requests.Timeout:
            result.attempts.append(Attempt(None, time.perf_counter() - started, "client timeout"))
            time.sleep(jitter.uniform(0, 0.05))  # a client's back-off before its retry
            continue
        except requests.RequestException as exc:
            result.attempts.append(Attempt(None, time.perf_counter() - started, type(exc).__name__))
            break
        result.attempts.append(Attempt(response.status_code, time.perf_counter() - started))
        result.served_by = response.headers.get("X-Served-By")
        if response.status_code == 201:
            result.order_id = response.json().get("orderId")
            result.replayed = response.headers.get("Idempotent-Replayed") == "true"
        break
    return result
