"""What publishing order events costs per create: creates with new keys on a copy with
K_SINK unset (the default: no outbox row, nothing sent) and on a copy publishing every
order to a local receiver (devserver/sink.py, the tests' own), alternated in one run.

On, each create also writes its outbox row in the INSERT statement, POSTs the event
after the answer, and deletes the row (deletes gathered into one statement). The copy's
CPU per create and PostgreSQL's (all its processes) show where that goes; the sink's
own CPU is left out, as a Broker's would be.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from devserver.sink import EventSink
from devserver.stack import LocalStack
from devserver.waiting import NotReady, wait_until
from loadgen.closed_loop import measure

from . import traffic
from .cpu import tree_cpu_seconds
from .plan import Plan
from .stats import figures

CONNECTIONS = 16
_points = itertools.count()


def publishing_cost(stack: LocalStack, plan: Plan, storage_pids: list[int], run_id: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="orders-bench-sink-"))
    sink = EventSink(workdir).start()
    copies = {
        "off": stack.start_copy(),
        "on": stack.start_copy(env={"K_SINK": sink.url}),
    }
    try:
        points: dict[str, list[dict[str, Any]]] = {name: [] for name in copies}
        for _ in range(max(plan.rounds, 1)):
            for name, copy in copies.items():
                profile = f"bench-publish-{name}-{run_id}"
                stream = traffic.new_keys(copy.url, profile, f"{run_id}-pub{next(_points)}")
                measure(copy.url, CONNECTIONS, stream, seconds=plan.warmup_seconds)
                assert copy.process is not None
                copy_cpu, storage_cpu = tree_cpu_seconds([copy.process.pid]), tree_cpu_seconds(storage_pids)
                measured = measure(copy.url, CONNECTIONS, stream, seconds=plan.seconds)
                copy_cpu = tree_cpu_seconds([copy.process.pid]) - copy_cpu
                storage_cpu = tree_cpu_seconds(storage_pids) - storage_cpu
                point = figures(measured)
                if measured.answers:
                    point["copyCpuMicrosecondsPerCreate"] = round(copy_cpu / len(measured.answers) * 1e6)
                    point["postgresCpuMicrosecondsPerCreate"] = round(storage_cpu / len(measured.answers) * 1e6)
                points[name].append(point)
        best = {name: max(rounds, key=lambda point: point["throughput"]) for name, rounds in points.items()}
        return {
            "connections": CONNECTIONS, "points": best,
            "throughputByRound": {name: [p["throughput"] for p in rounds] for name, rounds in points.items()},
            **_all_published(stack, sink),
        }
    finally:
        for copy in copies.values():
            copy.stop(timeout_seconds=10)
            stack.copies.remove(copy)
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _all_published(stack: LocalStack, sink: EventSink) -> dict[str, Any]:
    """Every order the publishing copy made reached the sink once the load stopped."""
    def pending() -> int:
        with stack.connect() as connection:
            return int(connection.native.run("SELECT count(*) FROM outbox")[0][0])

    try:
        wait_until(lambda: pending() == 0, what="the outbox drained", timeout_seconds=60)
    except NotReady:
        pass
    received = sink.deliveries()
    return {"eventsReceived": len(received), "distinctEventIds": len({d["id"] for d in received}),
            "pendingAtEnd": pending()}
