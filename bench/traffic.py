"""What each scenario sends: streams of prepared POST /orders requests.

Requests are built before or while a run goes, as bytes, so the generator spends its time
sending. Every stream is a `NextRequest`: call it for the next request, None at the end.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

from function.fingerprint import fingerprint

from loadgen.closed_loop import NextRequest, request_bytes

PRODUCT = "sku-bench"
QUANTITY = 1


def order_body(product_id: str = PRODUCT) -> bytes:
    return json.dumps({"productId": product_id, "productQuantity": QUANTITY}).encode()


def order_fingerprint(product_id: str = PRODUCT) -> str:
    """What the function stores for this body: rows seeded by SQL must match it exactly."""
    return fingerprint({"productId": product_id, "productQuantity": QUANTITY})


def create_request(url: str, profile: str, key: str, product_id: str = PRODUCT) -> bytes:
    headers = {"Content-Type": "application/json", "X-Profile-Id": profile, "Idempotency-Key": key}
    return request_bytes("POST", url + "/orders", headers, order_body(product_id))


def new_keys(url: str, profile: str, prefix: str) -> NextRequest:
    """A key never sent before, every time: each request creates an order."""
    numbers = itertools.count()
    return lambda: create_request(url, profile, f"{prefix}-{next(numbers)}")


def cycling(prepared: list[bytes]) -> NextRequest:
    """The same requests over and over (replays of finished keys)."""
    loop: Iterator[bytes] = itertools.cycle(prepared)
    return lambda: next(loop)


def once_each(prepared: list[bytes]) -> NextRequest:
    """Each request once, then no more (replays that must each miss Redis)."""
    remaining = iter(prepared)
    return lambda: next(remaining, None)


def storm(url: str, profile: str, prefix: str, duplicates: int) -> NextRequest:
    """Key after key, each sent `duplicates` times in a row: with at least that many
    connections, all duplicates of a key are in flight at once. The productId names the
    key, so each answer can be checked against the one order stored for it."""
    def requests() -> Iterator[bytes]:
        for number in itertools.count():
            prepared = create_request(url, profile, f"{prefix}-{number}", product_id=f"{prefix}-{number}")
            yield from itertools.repeat(prepared, duplicates)

    stream = requests()
    return lambda: next(stream)
