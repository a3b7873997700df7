"""`GET /orders` for a profile with 100k orders against one with 10: the keyset cursor and
the (profile, order_number) index should make both cost the same page.

The big profile is bulk-inserted with generate_series (seconds, not the minutes that
100k creates through the function would take).
"""

from __future__ import annotations

from typing import Any

from demo.stack import Connection
from function.inputs import encode_cursor

from . import traffic
from .loadgen import measure, request_bytes
from .stats import figures

CONNECTIONS = 4
PAGE = 50  # the contract's default page size


def listing_latency(function_url: str, database_url: str, run_id: str, big: int, seconds: float) -> dict[str, Any]:
    profiles = {"small": (f"bench-list10-{run_id}", 10), "big": (f"bench-list{big}-{run_id}", big)}
    with Connection(database_url) as connection:
        for profile, count in profiles.values():
            connection.native.run(
                "INSERT INTO orders (profile_id, idempotency_key, fingerprint, product_id, product_quantity)"
                " SELECT :profile, 'listed-' || g, :fingerprint, :product, 1 FROM generate_series(1, :count) AS g",
                profile=profile, fingerprint=traffic.order_fingerprint(), product=traffic.PRODUCT, count=count,
            )
        connection.native.run("ANALYZE orders")
        oldest = connection.native.run(
            "SELECT min(order_number) FROM orders WHERE profile_id = :p", p=profiles["big"][0])[0][0]
    pages = {
        "first page, 10 orders": f"/orders?profileId={profiles['small'][0]}",
        f"first page, {big} orders": f"/orders?profileId={profiles['big'][0]}",
        # The last page of the big profile: the cursor skips 100k rows by index, not by OFFSET.
        f"last page, {big} orders": f"/orders?profileId={profiles['big'][0]}"
                                    f"&cursor={encode_cursor(oldest + PAGE)}",
    }
    results = {}
    for name, path in pages.items():
        prepared = request_bytes("GET", function_url + path, {})
        measure(function_url, CONNECTIONS, lambda: prepared, seconds=0.5)  # warm-up
        results[name] = figures(measure(function_url, CONNECTIONS, lambda: prepared, seconds=seconds))
    return {"connections": CONNECTIONS, "pageSize": PAGE, "pages": results}
