"""Cold start: from the process start of a new copy to its first 201.

What a scale-from-zero request waits for, less the image pull and pod scheduling: the
interpreter and imports, gunicorn's fork, then, in that first request, the lazy
PostgreSQL connection with its schema check and the first Redis connection.
"""

from __future__ import annotations

import http.client
import time
import uuid
from typing import Any, Callable

from devserver.copies import FunctionCopy

from .stats import latency_figures
from .traffic import order_body

GIVE_UP_SECONDS = 30.0


def cold_starts(start_copy: Callable[[], FunctionCopy], samples: int) -> dict[str, Any]:
    """`samples` fresh copies, one after another, each stopped after its first 201."""
    runs = [_one(start_copy) for _ in range(samples)]
    return {
        "samples": runs,
        "toFirst201": latency_figures([run["toFirst201Seconds"] for run in runs]),
        "firstRequest": latency_figures([run["firstRequestSeconds"] for run in runs]),
    }


def _one(start_copy: Callable[[], FunctionCopy]) -> dict[str, float]:
    started = time.perf_counter()
    copy = start_copy()
    try:
        while True:
            sent = time.perf_counter()
            status = _post(copy.port)
            if status == 201:
                done = time.perf_counter()
                return {
                    "toFirst201Seconds": round(done - started, 4),
                    "toListeningSeconds": round(sent - started, 4),
                    "firstRequestSeconds": round(done - sent, 4),
                }
            if time.perf_counter() - started > GIVE_UP_SECONDS:
                raise RuntimeError(f"no 201 from a new copy within {GIVE_UP_SECONDS} s (last: {status})")
            time.sleep(0.005)
    finally:
        copy.stop()


def _post(port: int) -> int | None:
    """The status of one create, None while nothing listens yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=GIVE_UP_SECONDS)
    try:
        connection.request("POST", "/orders", body=order_body(), headers={
            "Content-Type": "application/json", "X-Profile-Id": "bench-cold",
            "Idempotency-Key": f"cold-{uuid.uuid4()}",
        })
        return connection.getresponse().status
    except ConnectionRefusedError:
        return None
    finally:
        connection.close()
