"""What tracing costs: replays on a copy with tracing off (the default: nothing of
OpenTelemetry imported, no exporter thread), on a copy exporting every span over
OTLP/HTTP to a local sink, and on one keeping 5 % of traces (production's sampler),
alternated in the same run.

Off is the function as measured everywhere else; the point shows what turning tracing
on costs per replay, so an operator can choose a sampling rate with a number in hand.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devserver.stack import LocalStack
from loadgen.closed_loop import measure

from . import traffic
from .cpu import tree_cpu_seconds
from .plan import Plan
from .stats import figures

CONNECTIONS = 16
SAMPLED_5_PERCENT = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.05"}


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts every export and keeps nothing."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's spelling)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def tracing_cost(stack: LocalStack, plan: Plan, replays: list[bytes]) -> dict[str, Any]:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    copies = {
        "off": stack.start_copy(),
        "on": stack.start_copy(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}),
        # As production runs it: a trace in 20 kept (the bench's requests carry no
        # traceparent, so the ratio decides): what a sampled-out request costs.
        "sampled5": stack.start_copy(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **SAMPLED_5_PERCENT}),
    }
    try:
        points: dict[str, list[dict[str, Any]]] = {name: [] for name in copies}
        for _ in range(max(plan.rounds, 1)):
            for name, copy in copies.items():
                # The answers are in the shared Redis: the same requests replay on any copy.
                measure(copy.url, CONNECTIONS, traffic.cycling(replays), seconds=plan.warmup_seconds)
                assert copy.process is not None
                cpu = tree_cpu_seconds([copy.process.pid])
                measured = measure(copy.url, CONNECTIONS, traffic.cycling(replays), seconds=plan.seconds)
                cpu = tree_cpu_seconds([copy.process.pid]) - cpu
                point = figures(measured)
                point["copyCpuMicrosecondsPerReplay"] = round(cpu / len(measured.answers) * 1e6) if measured.answers else None
                points[name].append(point)
        best = {name: max(rounds, key=lambda point: point["throughput"]) for name, rounds in points.items()}
        return {"connections": CONNECTIONS, "points": best,
                "throughputByRound": {name: [p["throughput"] for p in rounds] for name, rounds in points.items()}}
    finally:
        for copy in copies.values():
            copy.stop(timeout_seconds=10)
            stack.copies.remove(copy)
        sink.shutdown()
