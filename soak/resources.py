"""What a long run could leak: each copy's memory, and PostgreSQL connections."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from devserver.copies import FunctionCopy
from devserver.stack import LocalStack

# The copies' connections; this query's own connection carries the same name, so not it.
COUNT_CONNECTIONS = """SELECT count(*) FROM pg_stat_activity
WHERE application_name = 'orders-function' AND pid <> pg_backend_pid()"""


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the traffic started
    rss_bytes: dict[str, int]  # copy name -> resident memory of its processes (gunicorn and workers)
    postgres_connections: int


def take_sample(seconds: float, copies: dict[str, FunctionCopy], stack: LocalStack) -> Sample:
    with stack.connect() as connection:
        connections = int(connection.native.run(COUNT_CONNECTIONS)[0][0])
    return Sample(
        seconds, {name: rss_of(copy) for name, copy in copies.items() if copy.process is not None}, connections
    )


def rss_of(copy: FunctionCopy) -> int:
    assert copy.process is not None
    try:
        root = psutil.Process(copy.process.pid)
        return sum(process.memory_info().rss for process in [root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


# DATABASE_POOL_SIZE's default: no copy may hold more PostgreSQL connections than this.
POOL_SIZE = 4
# Memory that grows by both this fraction and this much over a run is worth a look: a
# Python process settles after its first minutes, so a short run may flag without a leak.
RSS_GROWTH_FRACTION, RSS_GROWTH_BYTES = 0.5, 32 * 2**20


def judge(samples: list[Sample]) -> tuple[list[str], list[str]]:
    """(problems, flags): more connections than the pools allow fails the soak; memory
    growth is flagged for a person to judge."""
    problems = [
        f"{sample.seconds:.0f} s: {sample.postgres_connections} PostgreSQL connections for "
        f"{len(sample.rss_bytes)} copies of at most {POOL_SIZE} each"
        for sample in samples
        if sample.postgres_connections > POOL_SIZE * len(sample.rss_bytes)
    ]
    flags = []
    first, last = samples[0], samples[-1]
    for name in sorted(set(first.rss_bytes) & set(last.rss_bytes)):
        before, after = first.rss_bytes[name], last.rss_bytes[name]
        if after - before > max(RSS_GROWTH_BYTES, before * RSS_GROWTH_FRACTION):
            flags.append(f"{name}: memory grew from {before / 2**20:.0f} to {after / 2**20:.0f} MiB")
    if last.postgres_connections > first.postgres_connections + POOL_SIZE:
        flags.append(f"PostgreSQL connections grew from {first.postgres_connections} to {last.postgres_connections}")
    return problems, flags
