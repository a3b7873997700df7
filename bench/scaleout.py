"""Copies sharing one transaction-mode PgBouncer (issue 9's capacity point): creates per
second and p99 with 1, 2, 4 and 8 copies, each with DATABASE_POOLING=transaction, beside
one copy straight to PostgreSQL in the same run (what transaction pooling costs); each
with group commit on and off (issue 16), with PostgreSQL's CPU per order.

On this 2-core machine more copies cannot add cores: the point shows what the shared
parts (PgBouncer's pool, PostgreSQL's commits) do as copies are added, not cluster
throughput. Each copy's CPU per create is reported so the per-core figure carries over.
"""

from __future__ import annotations

import uuid
from typing import Any

from devserver.copies import FunctionCopy
from devserver.pgbouncer import INSTALL_HINT, PgBouncerServer, pgbouncer_binary
from devserver.stack import LocalStack
from loadgen.closed_loop import measure_many

from . import traffic
from .copies import UNBATCHED
from .cpu import tree_cpu_seconds
from .plan import Plan
from .stats import figures

CONNECTIONS = 16  # in all, spread over the copies
DEFAULT_POOL_SIZE = 8  # PgBouncer's server connections, as in tests/test_pgbouncer.py


def through_pgbouncer(stack: LocalStack, plan: Plan) -> dict[str, Any]:
    if pgbouncer_binary() is None or stack.postgres is None:
        return {"skipped": f"pgbouncer is not installed ({INSTALL_HINT})"}
    bouncer = PgBouncerServer(stack.workdir / "pgbouncer", stack.postgres,
                              default_pool_size=DEFAULT_POOL_SIZE, max_client_conn=400).start()
    try:
        points: dict[str, Any] = {}
        for batching, switch in (("on", {}), ("off", UNBATCHED)):
            direct = {"DATABASE_POOLING": "direct", **switch}
            points[f"direct, 1 copy, group commit {batching}"] = _creates(stack, plan, 1, direct)
            pooled = {"DATABASE_URL": bouncer.url, "DATABASE_POOLING": "transaction", **switch}
            for count in plan.pgbouncer_copies:
                name = f"PgBouncer, {count} {'copy' if count == 1 else 'copies'}, group commit {batching}"
                points[name] = _creates(stack, plan, count, pooled)
    finally:
        bouncer.stop()
    return {"connections": CONNECTIONS, "defaultPoolSize": DEFAULT_POOL_SIZE, "points": points}


def _creates(stack: LocalStack, plan: Plan, count: int, env: dict[str, str]) -> dict[str, Any]:
    copies = [stack.start_copy(env=env, wait=False) for _ in range(count)]
    try:
        for copy in copies:
            copy.wait_ready()
        urls = [copy.url for copy in copies]
        stream = traffic.new_keys(urls[0], f"bench-scaleout-{uuid.uuid4().hex[:8]}", "k")
        measure_many(urls, CONNECTIONS, stream, seconds=plan.warmup_seconds)
        pids = [_pid(copy) for copy in copies]
        postgres = [stack.postgres.process.pid] if stack.postgres and stack.postgres.process else []
        cpu, postgres_cpu = tree_cpu_seconds(pids), tree_cpu_seconds(postgres)
        measured = measure_many(urls, CONNECTIONS, stream, seconds=plan.seconds)
        cpu, postgres_cpu = tree_cpu_seconds(pids) - cpu, tree_cpu_seconds(postgres) - postgres_cpu
        result = figures(measured)
        if measured.answers:
            result["copyCpuMicrosecondsPerCreate"] = round(cpu / len(measured.answers) * 1e6)
            result["postgresCpuMicrosecondsPerCreate"] = round(postgres_cpu / len(measured.answers) * 1e6)
        return result
    finally:
        for copy in copies:
            copy.stop(timeout_seconds=10)
            stack.copies.remove(copy)


def _pid(copy: FunctionCopy) -> int:
    assert copy.process is not None
    return copy.process.pid
