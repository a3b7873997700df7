"""Keyed load: clients that create an order per key and retry it, as a client with
retries does, until they hear a 201; the retry goes to the next copy, so a key whose
copy dies under it is finished by another.

`create_until_answered` is one key's retry loop (the soak's clients use it too);
`KeyedLoad` runs many clients over many keys and keeps what each was told.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from devserver.waiting import NotReady, wait_until

from .told import Told

# 409 (original still in flight) and 503 (PostgreSQL busy) say "retry": a client does.
RETRY_STATUSES = (409, 503)
CUT = 0  # the status counted for an attempt whose connection died (refused, reset, cut short)


@dataclass
class Answered:
    """How one key's retry loop ended."""

    response: requests.Response | None  # the 201, or the answer that stopped the loop; None: cut or gave up
    cut_at: list[float] = field(default_factory=list)  # when each attempt that lost its connection was sent

    @property
    def created(self) -> bool:
        return self.response is not None and self.response.status_code == 201


def create_until_answered(
    session: requests.Session, next_url: Callable[[], str], profile: str, key: str, body: dict[str, Any], *,
    give_up_seconds: float = 20.0, pause_seconds: float = 0.1, retry_cut: bool = True,
    timeout_seconds: float = 20.0, on_answer: Callable[[int], None] = lambda status: None,
) -> Answered:
    """POST the key until a 201 or an answer that is not worth retrying; an attempt whose
    connection dies is retried only with `retry_cut` (else the caller decides later)."""
    answered = Answered(None)
    deadline = time.monotonic() + give_up_seconds
    while time.monotonic() < deadline:
        sent_at = time.monotonic()
        try:
            response = session.post(
                next_url() + "/orders", json=body, timeout=timeout_seconds,
                headers={"X-Profile-Id": profile, "Idempotency-Key": key},
            )
        except requests.RequestException:
            answered.cut_at.append(sent_at)
            on_answer(CUT)
            if not retry_cut:
                return answered
            continue
        on_answer(response.status_code)
        if response.status_code not in RETRY_STATUSES:
            answered.response = response
            return answered
        time.sleep(pause_seconds)
    return answered


class KeyedLoad:
    """Clients creating orders, each from its home copy and retried on the others until it
    gets a 201; every answer is compared with the first for its key."""

    def __init__(self, urls: list[str], *, clients: int, keys_per_client: int, profile: str = "load") -> None:
        self.urls = urls
        self.profile = profile
        self.keys = [[f"{profile}-{c}-{k}" for k in range(keys_per_client)] for c in range(clients)]
        self.told = Told()
        self.unanswered: list[str] = []
        self.failures: list[str] = []  # anything a client did not expect, with its key
        self.cut: list[tuple[str, float]] = []  # (key, when sent) of requests that lost their connection
        self.answered_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> list[threading.Thread]:
        self._threads = [threading.Thread(target=self._client, args=(keys, n)) for n, keys in enumerate(self.keys)]
        for thread in self._threads:
            thread.start()
        return self._threads

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def wait_until_acknowledged(self, count: int, timeout_seconds: float = 30.0) -> None:
        """Until the clients heard `count` 201s; NotReady (naming what did happen) if not."""
        wait_until(
            lambda: len(self.told) >= count or bool(self.failures),
            what=f"{count} acknowledged orders", timeout_seconds=timeout_seconds, poll_seconds=0.005,
        )
        if self.failures:
            raise NotReady(f"the clients failed before {count} orders were acknowledged: {self.failures[:3]}")

    def acknowledged_orders(self) -> dict[tuple[str, str], str]:
        """(profile, key) -> order id: what the auditor holds PostgreSQL to."""
        return self.told.orders()

    @property
    def acknowledged(self) -> dict[str, str]:
        """key -> the order id its first 201 named."""
        return {key: order_id for (_, key), order_id in self.told.orders().items()}

    def _client(self, keys: list[str], number: int) -> None:
        try:
            self._send_each(keys, number)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            with self._lock:
                self.failures.append(repr(exc))

    def _send_each(self, keys: list[str], number: int) -> None:
        session = requests.Session()
        home = number % len(self.urls)
        for key in keys:
            # Each key starts at the client's home copy and moves on to the next on a retry.
            turns = itertools.cycle(self.urls[home:] + self.urls[:home])
            answered = create_until_answered(session, lambda: next(turns), self.profile, key, {"productQuantity": 1})
            with self._lock:
                self.cut += [(key, sent_at) for sent_at in answered.cut_at]
                if answered.response is None:
                    self.unanswered.append(key)
                elif not answered.created:
                    self.failures.append(f"{key}: {answered.response.status_code} {answered.response.text}")
                else:
                    response = answered.response
                    if not self.told.acknowledge((self.profile, key), response.json()["orderId"], response.content):
                        self.failures.append(f"{key}: two different answers")
                    self.answered_at[key] = time.monotonic()
