"""The soak's traffic: clients creating, replaying, reading and listing their orders, and
duplicate storms of one key sent to every copy at once. Creates go through the keyed
load's retry loop (loadgen.keyed); every answer goes in the Ledger."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from typing import Any, Callable

import requests

from loadgen.keyed import RETRY_STATUSES, create_until_answered

from .ledger import Ledger, OrderKey

# A client's mix, per operation it picks next.
OPERATION_WEIGHTS = {"create": 45, "replay": 25, "get": 15, "list": 10}
STORM_PROFILE, STORM_DUPLICATES = "soak-storm", 4
# 409 (original still in flight) and 503 (PostgreSQL busy) say "retry": a client does.
# A create's retries outlast the nemesis's longest partition plus a request's own bound
# while PostgreSQL is silent (docs/operations.md: 13 s with the default timeouts).
RETRY_GIVE_UP_SECONDS, RETRY_PAUSE_SECONDS = 30.0, 0.25
THINK_SECONDS = 0.01  # between a client's requests: steady traffic, not a benchmark
TIMEOUT_SECONDS = 30


class Workload:
    def __init__(self, urls: Callable[[], list[str]], ledger: Ledger, *, clients: int, seed: int) -> None:
        self._urls = urls
        self._ledger = ledger
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._guarded, args=(self._client, f"soak-{n}", seed + n), daemon=True)
            for n in range(clients)
        ] + [threading.Thread(target=self._guarded, args=(self._storms, STORM_PROFILE, seed - 1), daemon=True)]
        self._key_numbers = itertools.count()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT_SECONDS * 2)

    def _guarded(self, loop: Callable[[str, random.Random], None], profile: str, seed: int) -> None:
        try:
            loop(profile, random.Random(seed))
        except Exception as exc:  # noqa: BLE001 - a dead client must fail the soak, not vanish
            self._ledger.fail(f"client {profile} stopped: {exc!r}")

    def _client(self, profile: str, rng: random.Random) -> None:
        session = requests.Session()
        mine: list[OrderKey] = []
        operations, weights = list(OPERATION_WEIGHTS), list(OPERATION_WEIGHTS.values())
        while not self._stopping.is_set():
            operation = rng.choices(operations, weights)[0] if mine else "create"
            if operation == "create":
                order = (profile, self._new_key())
                if self._create(session, rng, order, new_request(rng)):
                    mine.append(order)
            elif operation == "replay":
                self._replay(session, rng, rng.choice(mine))
            elif operation == "get":
                self._get(session, rng, rng.choice(mine))
            else:
                self._list(session, rng, profile)
            time.sleep(THINK_SECONDS)

    def _storms(self, profile: str, rng: random.Random) -> None:
        while not self._stopping.is_set():
            order, request = (profile, self._new_key()), new_request(rng)
            barrier = threading.Barrier(STORM_DUPLICATES)
            duplicates = [
                threading.Thread(target=self._duplicate, args=(barrier, order, request, random.Random(rng.random())))
                for _ in range(STORM_DUPLICATES)
            ]
            for thread in duplicates:
                thread.start()
            for thread in duplicates:
                thread.join()
            time.sleep(THINK_SECONDS * 5)

    def _duplicate(self, barrier: threading.Barrier, order: OrderKey, request: dict[str, Any], rng: random.Random) -> None:
        barrier.wait()
        self._create(requests.Session(), rng, order, request)

    def _create(self, session: requests.Session, rng: random.Random, order: OrderKey, request: dict[str, Any]) -> bool:
        """True once a 201 came back; False if the connection died under the request
        (the audit retries that key later) or the function refused it."""
        answered = create_until_answered(
            session, lambda: rng.choice(self._urls()), order[0], order[1], request,
            give_up_seconds=RETRY_GIVE_UP_SECONDS, pause_seconds=RETRY_PAUSE_SECONDS, retry_cut=False,
            timeout_seconds=TIMEOUT_SECONDS, on_answer=lambda status: self._ledger.count("create", status),
        )
        if answered.cut_at:
            self._ledger.note_cut(order, request)
            return False
        if answered.response is None:
            self._ledger.fail(f"create {order}: still 409/503 after {RETRY_GIVE_UP_SECONDS:.0f} s")
            return False
        if not answered.created:
            self._ledger.fail(f"create {order}: {answered.response.status_code} {answered.response.text[:200]}")
            return False
        self._ledger.acknowledge(order, request, answered.response.content, answered.response.json()["orderId"])
        return True

    def _replay(self, session: requests.Session, rng: random.Random, order: OrderKey) -> None:
        first = self._ledger.told.first(order)
        response = self._send(session, "replay", "POST", rng, "/orders", order[0], order[1], first.request)
        if response is None or response.status_code in RETRY_STATUSES:
            return
        if response.status_code != 201 or response.content != first.answer:
            self._ledger.fail(f"replay {order}: {response.status_code}, not the first answer")
        elif response.headers.get("Idempotent-Replayed") != "true":
            self._ledger.fail(f"replay {order}: no Idempotent-Replayed header")

    def _get(self, session: requests.Session, rng: random.Random, order: OrderKey) -> None:
        first = self._ledger.told.first(order)
        response = self._send(session, "get", "GET", rng, f"/orders/{first.order_id}", order[0])
        if response is None or response.status_code == 503:  # PostgreSQL partitioned: said, and retryable
            return
        if response.status_code != 200 or response.json() != json.loads(first.answer):
            self._ledger.fail(f"get {order}: {response.status_code}, not the order created")

    def _list(self, session: requests.Session, rng: random.Random, profile: str) -> None:
        response = self._send(session, "list", "GET", rng, "/orders?limit=50", profile)
        if response is None or response.status_code == 503:
            return
        if response.status_code != 200:
            self._ledger.fail(f"list {profile}: {response.status_code} {response.text[:200]}")
        elif any(order["profileId"] != profile for order in response.json()["orders"]):
            self._ledger.fail(f"list {profile}: another profile's order listed")

    def _send(
        self, session: requests.Session, operation: str, method: str, rng: random.Random, path: str,
        profile: str, key: str | None = None, body: dict[str, Any] | None = None,
    ) -> requests.Response | None:
        headers = {"X-Profile-Id": profile, **({"Idempotency-Key": key} if key else {})}
        try:
            response = session.request(
                method, rng.choice(self._urls()) + path, json=body, headers=headers, timeout=TIMEOUT_SECONDS,
            )
        except requests.RequestException:  # a killed copy: refused, reset or cut short
            self._ledger.count(operation, 0)
            return None
        self._ledger.count(operation, response.status_code)
        if response.status_code >= 500 and response.status_code != 503:
            self._ledger.fail(f"{operation} {profile}: {response.status_code} {response.text[:200]}")
        return response

    def _new_key(self) -> str:
        return f"soak-key-{next(self._key_numbers)}"


def new_request(rng: random.Random) -> dict[str, Any]:
    request: dict[str, Any] = {"productQuantity": rng.randint(1, 10_000)}
    if rng.random() < 0.5:
        request["productId"] = f"sku-{rng.randint(1, 500)}"
    return request
