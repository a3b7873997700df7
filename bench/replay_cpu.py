"""`python -m bench.replay_cpu`: copy CPU per replay, the function beside both floors (and,
with `--previous DIR`, a copy of another checkout, e.g. `git archive` of the last release),
in one run. For a busy machine, where req/s swing too much to compare runs: each copy's
CPU over the same requests (finished keys, cycled) is the measure, and ratios in one run.

    .venv/bin/python -m bench.replay_cpu [--seconds 5] [--connections 1,4,16]
        [--previous /tmp/base] [--sampled] [--twin]
    # --sampled: + copies tracing at 0 % and 5 %; --twin: + a second plain copy, whose
    # ratio to the first is this measure's own spread (0.90-1.14 seen on a quiet machine)
"""

from __future__ import annotations

import argparse
import threading
from http.server import ThreadingHTTPServer

from devserver.copies import FunctionCopy, web_command
from devserver.stack import LocalStack
from loadgen.closed_loop import measure

from . import traffic
from .copies import floor_command
from .cpu import tree_cpu_seconds
from .knative import bench_copy_settings
from .tracing import SAMPLED_5_PERCENT, _Sink

KEYS = 500


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_cpu", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", default="1,4,16")
    parser.add_argument("--previous", help="a checkout whose function runs beside this one")
    parser.add_argument("--sampled", action="store_true", help="add copies tracing with 0 %% and 5 %% sampled")
    parser.add_argument("--twin", action="store_true", help="add a second plain copy: the measure's own spread")
    options = parser.parse_args(argv)
    with LocalStack(env=bench_copy_settings()) as stack:
        copies = {"function": stack.start_copy()}
        if options.twin:
            copies["twin"] = stack.start_copy()
        if options.previous:
            copies["previous"] = stack.start_copy(command=f"env -C {options.previous} {web_command()}")
        if options.sampled:
            sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
            threading.Thread(target=sink.serve_forever, daemon=True).start()
            endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}"}
            copies["sampled0"] = stack.start_copy(env={**endpoint, **SAMPLED_5_PERCENT, "OTEL_TRACES_SAMPLER_ARG": "0"})
            copies["sampled5"] = stack.start_copy(env={**endpoint, **SAMPLED_5_PERCENT})
        copies["floorReplay"] = stack.start_copy(command=floor_command("floorReplay"))
        copies["floorAsgi"] = stack.start_copy(command=floor_command("floorAsgi"))
        requests = [traffic.create_request(copies["function"].url, "bench-replay-cpu", f"k-{n}") for n in range(KEYS)]
        for name, copy in copies.items():  # every answer in Redis (each version under its own names)
            if not name.startswith("floor"):
                measure(copy.url, 16, traffic.once_each(requests), seconds=60)
        for connections in (int(c) for c in options.connections.split(",")):
            cpu = {name: _cpu_per_replay(copy, connections, requests, options.seconds) for name, copy in copies.items()}
            print(f"{connections:2d} connections: " + ", ".join(f"{name} {us:.0f} µs" for name, us in cpu.items())
                  + f"; function / replay floor {cpu['function'] / cpu['floorReplay']:.2f}"
                  + "".join(f", {name} / function {cpu[name] / cpu['function']:.2f}"
                            for name in cpu if name not in ("function", "floorReplay", "floorAsgi")), flush=True)
    return 0


def _cpu_per_replay(copy: FunctionCopy, connections: int, requests: list[bytes], seconds: float) -> float:
    assert copy.process is not None
    measure(copy.url, connections, traffic.cycling(requests), seconds=1)  # warm-up
    before = tree_cpu_seconds([copy.process.pid])
    measured = measure(copy.url, connections, traffic.cycling(requests), seconds=seconds)
    return (tree_cpu_seconds([copy.process.pid]) - before) / max(len(measured.answers), 1) * 1e6


if __name__ == "__main__":
    raise SystemExit(main())
