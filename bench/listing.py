"""`GET /orders` for a profile with 100k orders against one with 10: the keyset cursor and
the (profile, order_number) index should make both cost the same page.

The big profile is bulk-inserted with generate_series (seconds, not the minutes that
100k creates through the function would take).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devserver.stack import Connection
from function.orders import SELECT_NEWEST_BELOW
from function.validation import encode_cursor
from loadgen.closed_loop import measure, request_bytes

from . import traffic
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
        connection.native.run("VACUUM (ANALYZE) orders")  # as autovacuum leaves older rows
        oldest = connection.native.run(
            "SELECT min(order_number) FROM orders WHERE profile_id = :p", p=profiles["big"][0])[0][0]
        plan = connection.native.run(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + SELECT_NEWEST_BELOW,
            profile=profiles["big"][0], below=oldest + PAGE, limit=PAGE + 1,
        )[0][0][0]["Plan"]
    small, large = profiles["small"][0], profiles["big"][0]
    pages = {
        "10 orders: first page (10 rows)": f"/orders?profileId={small}",
        f"{big} orders: first 10 rows (limit=10)": f"/orders?profileId={large}&limit=10",
        f"{big} orders: first page ({PAGE} rows)": f"/orders?profileId={large}",
        # The oldest page: the cursor skips 100k rows by index, not by OFFSET.
        f"{big} orders: last page ({PAGE} rows, cursor)":
            f"/orders?profileId={large}&cursor={encode_cursor(oldest + PAGE)}",
    }
    results = {}
    for name, path in pages.items():
        stream = _repeating(request_bytes("GET", function_url + path, {}))
        measure(function_url, CONNECTIONS, stream, seconds=0.5)  # warm-up
        results[name] = figures(measure(function_url, CONNECTIONS, stream, seconds=seconds))
    return {
        "connections": CONNECTIONS, "pageSize": PAGE, "pages": results,
        "lastPagePlan": _plan_summary(plan),
    }


def _repeating(prepared: bytes) -> Callable[[], bytes]:
    return lambda: prepared


def _plan_summary(plan: dict[str, Any]) -> str:
    """`Limit <- Index Scan using orders_profile_newest (51 rows, 0.09 ms)`: the shape that
    shows the page is read by index, whatever the profile's size."""
    nodes, node = [], plan
    while True:
        nodes.append(node["Node Type"] + (f" using {node['Index Name']}" if "Index Name" in node else ""))
        if not node.get("Plans"):
            break
        node = node["Plans"][0]
    return " <- ".join(nodes) + f" ({plan['Actual Rows']} rows, {plan['Actual Total Time']} ms)"
