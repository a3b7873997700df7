"""Duplicate storms: many clients sending the same keys at once, spread over copies."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import requests

# The body of every storm request, so a later replay can send the same one.
STORM_ORDER = {"productId": "sku-storm", "productQuantity": 1}


@dataclass
class StormResult:
    answers: dict[str, list[requests.Response]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = defaultdict(int)
        for responses in self.answers.values():
            for response in responses:
                counts[response.status_code] += 1
        return dict(counts)

    def served_by(self) -> set[str]:
        return {r.headers.get("X-Served-By", "") for rs in self.answers.values() for r in rs}


def storm(
    urls: list[str], *, keys: int, duplicates: int, profile: str = "storm", keys_at_once: int = 10,
) -> StormResult:
    """Send every key `duplicates` times, all released together by a barrier, copy by copy
    in turn so each key reaches every copy."""
    result = StormResult()
    lock = threading.Lock()
    key_names = [f"storm-{uuid.uuid4()}" for _ in range(keys)]
    sessions = [requests.Session() for _ in range(keys_at_once * duplicates)]
    for start in range(0, keys, keys_at_once):
        wave = key_names[start:start + keys_at_once]
        barrier = threading.Barrier(len(wave) * duplicates)
        threads = []
        for k, key in enumerate(wave):
            for d in range(duplicates):
                session = sessions[k * duplicates + d]
                url = urls[(k + d) % len(urls)]
                threads.append(threading.Thread(
                    target=_send, args=(session, url, key, profile, barrier, result, lock)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return result


def _send(
    session: requests.Session, url: str, key: str, profile: str,
    barrier: threading.Barrier, result: StormResult, lock: threading.Lock,
) -> None:
    barrier.wait()
    try:
        response = session.post(
            url + "/orders", json=STORM_ORDER,
            headers={"Idempotency-Key": key, "X-Profile-Id": profile}, timeout=60,
        )
    except requests.RequestException as exc:
        with lock:
            result.errors.append(f"{key}: {type(exc).__name__}")
        return
    with lock:
        result.answers[key].append(response)
