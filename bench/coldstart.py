"""Cold start: from the process start of a new copy to its first 201.

What a scale-from-zero request waits for, less the image pull and pod scheduling: the
interpreter and imports, gunicorn's fork, then, in that first request, the lazy
PostgreSQL connection with its schema check and the first Redis connection.

The image gets the same measurement (`container_cold_starts`), from `podman run` and from
the container's own process start, beside the bare process's: what the image adds.

`python -m bench.coldstart [--samples 7]` measures only the process cold start, the
function's alternated with the ASGI floor's, in minutes rather than a whole `make bench`.
"""

from __future__ import annotations

import argparse
import http.client
import time
import uuid
from typing import Any, Callable

from pathlib import Path

from devserver import container
from devserver.copies import FunctionCopy
from devserver.stack import LocalStack
from devserver.waiting import wait_until

from .copies import floor_command
from .knative import bench_copy_settings
from .stats import latency_figures, ratio
from .traffic import order_body

GIVE_UP_SECONDS = 30.0


def cold_starts(start_copy: Callable[[], FunctionCopy], samples: int) -> dict[str, Any]:
    """`samples` fresh copies, one after another, each stopped after its first 201."""
    return _figures([_one(start_copy) for _ in range(samples)])


def _figures(runs: list[dict[str, float]]) -> dict[str, Any]:
    figures = {
        "samples": runs,
        "toFirst201": latency_figures([run["toFirst201Seconds"] for run in runs]),
        "firstRequest": latency_figures([run["firstRequestSeconds"] for run in runs]),
        # The same copy's next create: what the first one paid for being first.
        "secondRequest": latency_figures([run["secondRequestSeconds"] for run in runs]),
    }
    if all("fromProcessStartSeconds" in run for run in runs):
        figures["fromProcessStart"] = latency_figures([run["fromProcessStartSeconds"] for run in runs])
    return figures


def alternated_cold_starts(starts: dict[str, Callable[[], FunctionCopy]], samples: int) -> dict[str, Any]:
    """`cold_starts` of each, one copy of each in turn: load from other work on the
    machine falls on all of them alike."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in starts}
    for _ in range(samples):
        for name, start in starts.items():
            runs[name].append(_one(start))
    return {name: _figures(each) for name, each in runs.items()}


def process_cold_starts(stack: LocalStack, samples: int) -> dict[str, Any]:
    """The function's cold start and the ASGI floor's, alternated, on `stack`."""
    return alternated_cold_starts({
        "function": lambda: stack.start_copy(wait=False),
        "floorAsgi": lambda: stack.start_copy(command=floor_command("floorAsgi"), wait=False),
    }, samples)


def container_cold_starts(env: dict[str, str], workdir: Path, samples: int) -> dict[str, Any]:
    """The image built from the Dockerfile, then `samples` fresh containers run as Knative
    runs them; or why not (podman missing)."""
    missing = container.missing_tools()
    if missing:
        return {"skipped": f"needs {', '.join(missing)}: {container.INSTALL}"}
    build_seconds = container.build_image()
    logs = iter(range(samples))

    def start() -> FunctionCopy:
        copy = container.ContainerCopy(env, log=workdir / f"cold-container-{next(logs)}.log")
        return copy.start(wait=False)

    return {"buildSeconds": round(build_seconds, 1), "imageBytes": container.image_size_bytes(),
            **cold_starts(start, samples)}


def _one(start_copy: Callable[[], FunctionCopy]) -> dict[str, float]:
    started = time.perf_counter()
    copy = start_copy()
    last: dict[str, float] = {}

    def created() -> bool:
        last["sent"] = time.perf_counter()
        return _post(copy.port) == 201

    try:
        wait_until(created, what="a new copy's first 201", timeout_seconds=GIVE_UP_SECONDS,
                   still_running=lambda: copy.running, log=copy.log, poll_seconds=0.005)
        done, done_epoch = time.perf_counter(), time.time()
        run = {
            "toFirst201Seconds": round(done - started, 4),
            "toListeningSeconds": round(last["sent"] - started, 4),
            "firstRequestSeconds": round(done - last["sent"], 4),
        }
        if isinstance(copy, container.ContainerCopy):  # less podman's and runc's set-up
            run["fromProcessStartSeconds"] = round(done_epoch - copy.started_at(), 4)
        second = time.perf_counter()
        _post(copy.port)
        run["secondRequestSeconds"] = round(time.perf_counter() - second, 4)
        return run
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description="process start to first 201, "
                                     "the function alternated with the ASGI floor, on the bench's stack")
    parser.add_argument("--samples", type=int, default=7)
    options = parser.parse_args(argv)
    with LocalStack(env=bench_copy_settings(), durable=True) as stack:
        cold = process_cold_starts(stack, options.samples)
    for name, figures in cold.items():
        print(f"{name}: first 201 p50 {figures['toFirst201']['p50']} ms, the first request p50 "
              f"{figures['firstRequest']['p50']} ms, the second {figures['secondRequest']['p50']} ms")
    over = ratio(cold["function"]["toFirst201"]["p50"], cold["floorAsgi"]["toFirst201"]["p50"])
    print(f"function / floor, to the first 201: {over}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
