"""`python -m bench --at-size N`: what a create costs on a table of N million orders
against an empty one, in one run (opt-in: it takes minutes).

One durable PostgreSQL with the settings the project ships (devserver/servers.py), one
copy per database (WORKERS=1), 16 connections, new keys for 20,000 profiles:
1. an empty database: a minute of creates from a CHECKPOINT, then steady state (at most 2 minutes);
2. N M orders loaded with generate_series into the PREVIOUS schema (random v4 ids, the
   (profile, key) constraint), its indexes built after the load; then the upgrade timed
   (`apply_migrations`, then the contract step) while a probe inserts one order at a time
   and records its slowest insert: how long creates were locked out; VACUUM ANALYZE (as
   autovacuum would have); then the same minute from a CHECKPOINT, again with
   wal_compression off and zstd (each from its own CHECKPOINT), and steady state.
Per created order: creates/s, PostgreSQL CPU (every server process, from /proc), WAL
bytes (pg_current_wal_lsn) and full-page images (pg_stat_wal.wal_fpi); p99 of a create,
a replay from PostgreSQL, GET /orders/{id} and a page of GET /orders; bytes per order on disk.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pg8000.native

from devserver.copies import FunctionCopy
from devserver.servers import PostgresServer, RedisServer
from function.migrate import MIGRATIONS_DIR, apply_migrations
from function.orders import insert_unless_keys_exist
from loadgen.closed_loop import Answer, NextRequest, measure, request_bytes

from . import traffic
from .cpu import tree_cpu_seconds
from .stats import figures, latency_figures

PROFILES = 20_000
CONNECTIONS = 16
LOAD_CHUNK = 1_000_000
PREVIOUS_SCHEMA = ("0001_create_orders", "0002_create_outbox")
COPY_ENV = {"WORKERS": "1", "LOG_LEVEL": "warning", "DATABASE_POOLING": "direct"}


def profile_name(number: int) -> str:
    return f"atsize-{number}"


class Probe:
    """Server-side figures between two moments: WAL, full-page images, checkpoints, CPU."""

    def __init__(self, connection: pg8000.native.Connection, postgres_pid: int) -> None:
        self.connection = connection
        self.pid = postgres_pid

    def snapshot(self) -> dict[str, Any]:
        lsn, fpi, records, checkpoints = self.connection.run(
            "SELECT pg_current_wal_lsn()::text, wal_fpi, wal_records,"
            " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) FROM pg_stat_wal")[0]
        return {"lsn": lsn, "fpi": int(fpi), "records": int(records), "checkpoints": int(checkpoints),
                "cpu": tree_cpu_seconds([self.pid]), "at": time.perf_counter()}

    def per_order(self, before: dict[str, Any], after: dict[str, Any], created: int) -> dict[str, Any]:
        wal = int(self.connection.run("SELECT pg_wal_lsn_diff(CAST(:a AS pg_lsn), CAST(:b AS pg_lsn))",
                                      a=after["lsn"], b=before["lsn"])[0][0])
        seconds = after["at"] - before["at"]
        per = (lambda value: round(value / created, 2) if created else None)
        return {
            "seconds": round(seconds, 1), "createdOrders": created,
            "createsPerSecond": round(created / seconds, 1),
            "postgresCpuMicrosecondsPerOrder": per((after["cpu"] - before["cpu"]) * 1e6),
            "walBytesPerOrder": per(wal), "fullPageImagesPerOrder": per(after["fpi"] - before["fpi"]),
            "walRecordsPerOrder": per(after["records"] - before["records"]),
            "checkpoints": after["checkpoints"] - before["checkpoints"],
        }


def new_orders(url: str, made: list[tuple[str, str]]) -> NextRequest:
    """A new key for a random one of the 20,000 profiles, every time; remembered for replays."""
    def next_request() -> bytes:
        profile, key = profile_name(random.randrange(PROFILES)), str(uuid.uuid4())
        made.append((profile, key))
        return traffic.create_request(url, profile, key)
    return next_request


def creates(url: str, seconds: float, made: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    measured = measure(url, CONNECTIONS, new_orders(url, made), seconds=seconds)
    created = sum(1 for answer in measured.answers if answer.status == 201 and not answer.replayed)
    return created, figures(measured)


def from_checkpoint(copy: FunctionCopy, probe: Probe, seconds: float, made: list[tuple[str, str]]) -> dict[str, Any]:
    probe.connection.run("CHECKPOINT")
    before = probe.snapshot()
    created, load = creates(copy.url, seconds, made)
    return {**probe.per_order(before, probe.snapshot(), created), "p99CreateMs": load["p99"],
            "statuses": load["statuses"]}


def minute_and_steady(
    copy: FunctionCopy, probe: Probe, *, first_seconds: float, steady_seconds: float,
    say: Callable[[str], None], label: str, compressions: tuple[str, ...] = (),
) -> dict[str, Any]:
    made: list[tuple[str, str]] = []
    creates(copy.url, 5, made)  # warm-up: the pool's connections, the copy's caches
    say(f"{label}: {first_seconds:.0f} s of creates from a CHECKPOINT")
    result: dict[str, Any] = {"fromCheckpoint": from_checkpoint(copy, probe, first_seconds, made)}
    # The same minute with other wal_compression values: what the shipped one buys.
    shipped = probe.connection.run("SHOW wal_compression")[0][0]
    for compression in compressions:
        say(f"{label}: {first_seconds:.0f} s from a CHECKPOINT with wal_compression={compression}")
        probe.connection.run(f"ALTER SYSTEM SET wal_compression = '{compression}'")
        probe.connection.run("SELECT pg_reload_conf()")
        result[f"fromCheckpointWalCompression_{compression}"] = from_checkpoint(copy, probe, first_seconds, made)
    if compressions:
        probe.connection.run("ALTER SYSTEM RESET wal_compression")
        probe.connection.run("SELECT pg_reload_conf()")
        result["shippedWalCompression"] = shipped
    if steady_seconds:
        say(f"{label}: {steady_seconds:.0f} s of creates in steady state")
        before = probe.snapshot()
        created, load = creates(copy.url, steady_seconds, made)
        result["steadyState"] = {**probe.per_order(before, probe.snapshot(), created), "p99CreateMs": load["p99"]}
    result["_made"] = made
    return result


def read_latencies(copy: FunctionCopy, redis: RedisServer, connection: pg8000.native.Connection,
                   made: list[tuple[str, str]], seconds: float) -> dict[str, Any]:
    """p99 (and the rest) of a replay from PostgreSQL, GET /orders/{id}, a page of GET /orders."""
    url = copy.url
    redis.client().flushall()  # every replay below misses Redis
    replays = [traffic.create_request(url, profile, key) for profile, key in random.sample(made, min(len(made), 4000))]
    replay_stream = iter(replays)
    replayed = measure(url, CONNECTIONS, lambda: next(replay_stream, None), seconds=seconds)
    sampled = (connection.run("SELECT order_id::text, profile_id FROM orders TABLESAMPLE SYSTEM (1) LIMIT 4000")
               or connection.run("SELECT order_id::text, profile_id FROM orders LIMIT 4000"))
    gets = [request_bytes("GET", f"{url}/orders/{order_id}", {"X-Profile-Id": profile}) for order_id, profile in sampled]
    lists = [request_bytes("GET", f"{url}/orders", {"X-Profile-Id": profile_name(n)}) for n in range(0, PROFILES, 7)]
    return {
        "replayFromPostgres": _summary(replayed.answers, "replayed"),
        "getById": _summary(measure(url, CONNECTIONS, _cycling(gets), seconds=seconds).answers),
        "listPage": _summary(measure(url, CONNECTIONS, _cycling(lists), seconds=seconds).answers),
    }


def _cycling(requests: list[bytes]) -> NextRequest:
    state = {"n": 0}

    def next_request() -> bytes:
        state["n"] += 1
        return requests[state["n"] % len(requests)]
    return next_request


def _summary(answers: list[Answer], must: str = "") -> dict[str, Any]:
    ok = sum(1 for answer in answers if answer.status in (200, 201) and (answer.replayed or must != "replayed"))
    return {"requests": len(answers), "ok": ok, **latency_figures([answer.seconds for answer in answers])}


def load_previous_schema(connection: pg8000.native.Connection, millions: float, say: Callable[[str], None]) -> dict[str, Any]:
    """N M orders as the previous version would hold them, loaded without indexes, which
    are built afterwards (much faster than maintaining them row by row)."""
    connection.run("CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    for version in PREVIOUS_SCHEMA:
        connection.run((MIGRATIONS_DIR / f"{version}.sql").read_text())
        connection.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=version)
    for ddl in ("ALTER TABLE outbox DROP CONSTRAINT outbox_order_id_fkey",
                "ALTER TABLE orders DROP CONSTRAINT orders_profile_key_unique",
                "ALTER TABLE orders DROP CONSTRAINT orders_pkey", "DROP INDEX orders_profile_newest"):
        connection.run(ddl)
    total = int(millions * 1_000_000)
    started = time.perf_counter()
    connection.run("SET maintenance_work_mem = '512MB'")
    for first in range(1, total + 1, LOAD_CHUNK):
        last = min(total, first + LOAD_CHUNK - 1)
        connection.run(
            "INSERT INTO orders (profile_id, idempotency_key, fingerprint, product_id, product_quantity, created_at)"
            " SELECT 'atsize-' || (g % :profiles), gen_random_uuid()::text, :fingerprint, :product, 1,"
            " now() - make_interval(secs => (CAST(:total AS bigint) - g) * 0.05) FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g",
            profiles=PROFILES, fingerprint=traffic.order_fingerprint(), product=traffic.PRODUCT,
            total=total, first=first, last=last)
        say(f"loaded {last:,} orders ({time.perf_counter() - started:.0f} s)")
    loaded = time.perf_counter() - started
    for ddl in ("ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (order_id)",
                "ALTER TABLE orders ADD CONSTRAINT orders_profile_key_unique UNIQUE (profile_id, idempotency_key)",
                "CREATE INDEX orders_profile_newest ON orders (profile_id, order_number DESC)",
                "ALTER TABLE outbox ADD CONSTRAINT outbox_order_id_fkey FOREIGN KEY (order_id)"
                " REFERENCES orders (order_id) ON DELETE CASCADE"):
        connection.run(ddl)
        say(f"{ddl.split(' ADD ')[-1][:60]} ({time.perf_counter() - started:.0f} s)")
    connection.run("RESET maintenance_work_mem")
    return {"orders": total, "loadSeconds": round(loaded, 1),
            "indexSeconds": round(time.perf_counter() - started - loaded, 1)}


class InsertProbe(threading.Thread):
    """One order at a time, as a create would insert it: the slowest says how long
    creates were held up while the schema changed."""

    def __init__(self, url_kwargs: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.connection = pg8000.native.Connection(**url_kwargs)
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        sql = insert_unless_keys_exist(1)
        while not self.stop.is_set():
            started = time.perf_counter()
            self.connection.run(sql, profile0=profile_name(random.randrange(PROFILES)), key0=str(uuid.uuid4()),
                                fingerprint0=traffic.order_fingerprint(), product_id0=traffic.PRODUCT, quantity0=1)
            self.latencies.append(time.perf_counter() - started)
            time.sleep(0.01)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.join()
        self.connection.close()
        return {"inserts": len(self.latencies), "slowestInsertMs": round(max(self.latencies, default=0) * 1000, 1),
                **latency_figures(self.latencies)}


def timed_upgrade(connect: Callable[[], pg8000.native.Connection], kwargs: dict[str, Any],
                  say: Callable[[str], None]) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    for name, contract in (("expand", False), ("contract", True)):
        probe = InsertProbe(kwargs)
        probe.start()
        time.sleep(0.5)
        connection = connect()
        started = time.perf_counter()
        try:
            versions = apply_migrations(connection, contract=contract)
        finally:
            connection.close()
        seconds = time.perf_counter() - started
        steps[name] = {"versions": versions, "seconds": round(seconds, 1), "probe": probe.finish()}
        say(f"{name}: {versions} in {seconds:.1f} s, slowest insert meanwhile {steps[name]['probe']['slowestInsertMs']} ms")
    return steps


def disk(connection: pg8000.native.Connection) -> dict[str, Any]:
    count = int(connection.run("SELECT count(*) FROM orders")[0][0])
    sizes = {name: int(size) for name, size in connection.run(
        "SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relname IN"
        " ('orders', 'orders_pkey', 'orders_key_digest', 'orders_profile_newest', 'orders_profile_key_unique')")}
    total = int(connection.run("SELECT pg_total_relation_size('orders')")[0][0])
    return {"orders": count, "bytes": sizes, "totalBytes": total,
            "bytesPerOrder": round(total / count, 1) if count else None,
            "bytesPerOrderByRelation": {name: round(size / count, 1) for name, size in sizes.items()} if count else {}}


def run(millions: float, *, first_seconds: float, steady_seconds: float, read_seconds: float,
        checkpoint_timeout: str | None, say: Callable[[str], None],
        settings: dict[str, str] | None = None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="orders-atsize-"))
    settings = {**({"checkpoint_timeout": checkpoint_timeout} if checkpoint_timeout else {}), **(settings or {})}
    postgres = PostgresServer(workdir / "postgres", durable=True, settings=settings)
    redis = RedisServer(workdir / "redis")
    copies: list[FunctionCopy] = []
    try:
        postgres.start()
        redis.start()
        admin = postgres.connect()
        shown = {name: admin.run(f"SHOW {name}")[0][0] for name in (
            "wal_compression", "checkpoint_timeout", "max_wal_size", "shared_buffers", "full_page_writes",
            "synchronous_commit", "server_version", *settings)}
        results: dict[str, Any] = {"millions": millions, "profiles": PROFILES, "connections": CONNECTIONS,
                                   "copy": COPY_ENV, "postgresSettings": shown}
        base = postgres.url.rsplit("/", 1)[0]
        for name in ("orders_empty", "orders_big"):
            admin.run(f"CREATE DATABASE {name}")

        def connect(database: str) -> pg8000.native.Connection:
            return pg8000.native.Connection(user="postgres", host="127.0.0.1", port=postgres.port, database=database)

        probe = Probe(admin, postgres.process.pid if postgres.process else 0)
        empty = connect("orders_empty")
        apply_migrations(empty)
        copy = FunctionCopy({**COPY_ENV, "DATABASE_URL": f"{base}/orders_empty", "REDIS_URL": redis.url},
                            log=workdir / "copy-empty.log").start()
        copies.append(copy)
        at_zero = minute_and_steady(copy, probe, first_seconds=first_seconds, steady_seconds=min(steady_seconds, 120),
                                    say=say, label="empty table")
        made = at_zero.pop("_made")
        say("empty table: read latencies")
        at_zero["latency"] = read_latencies(copy, redis, empty, made, read_seconds)
        at_zero["disk"] = disk(empty)
        empty.close()
        copy.stop()
        copies.remove(copy)
        results["empty"] = at_zero

        big = connect("orders_big")
        say(f"loading {millions} M orders into the previous schema")
        results["load"] = load_previous_schema(big, millions, say)
        admin.run("CHECKPOINT")
        say("upgrading: expand (0003) then contract (0004 CONCURRENTLY, 0005), creates going on")
        results["upgrade"] = timed_upgrade(lambda: connect("orders_big"), {
            "user": "postgres", "host": "127.0.0.1", "port": postgres.port, "database": "orders_big"}, say)
        started = time.perf_counter()
        big.run("VACUUM ANALYZE orders")
        results["load"]["vacuumAnalyzeSeconds"] = round(time.perf_counter() - started, 1)
        redis.client().flushall()
        copy = FunctionCopy({**COPY_ENV, "DATABASE_URL": f"{base}/orders_big", "REDIS_URL": redis.url},
                            log=workdir / "copy-big.log").start()
        copies.append(copy)
        at_size = minute_and_steady(copy, probe, first_seconds=first_seconds, steady_seconds=steady_seconds,
                                    say=say, label=f"{millions} M orders", compressions=("off", "zstd"))
        made = at_size.pop("_made")
        say(f"{millions} M orders: read latencies")
        at_size["latency"] = read_latencies(copy, redis, big, made, read_seconds)
        at_size["disk"] = disk(big)
        big.close()
        results["atSize"] = at_size
        results["ratios"] = _ratios(at_zero, at_size)
        return results
    finally:
        for copy in copies:
            copy.stop(timeout_seconds=10)
        redis.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _ratios(zero: dict[str, Any], size: dict[str, Any]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for window in ("fromCheckpoint", "steadyState"):
        if window in zero and window in size:
            ratios[window] = {
                name: round(size[window][name] / zero[window][name], 2) if zero[window][name] else None
                for name in ("postgresCpuMicrosecondsPerOrder", "walBytesPerOrder", "createsPerSecond")}
    return ratios


def markdown(results: dict[str, Any]) -> str:
    zero, size = results["empty"], results["atSize"]
    lines = [f"## A create at {results['millions']} M orders against an empty table",
             "", f"PostgreSQL settings: {results['postgresSettings']}", "",
             f"| per created order | empty: from checkpoint | {results['millions']} M: from checkpoint |"
             " empty: steady | at size: steady |", "|---|---:|---:|---:|---:|"]
    rows = [("creates/s", "createsPerSecond"), ("PostgreSQL CPU (us)", "postgresCpuMicrosecondsPerOrder"),
            ("WAL bytes", "walBytesPerOrder"), ("full-page images", "fullPageImagesPerOrder"),
            ("WAL records", "walRecordsPerOrder"), ("checkpoints in the window", "checkpoints"),
            ("p99 create (ms)", "p99CreateMs"), ("seconds", "seconds")]
    for title, name in rows:
        cells = [str(part.get(window, {}).get(name, "-")) for part in (zero, size) for window in ("fromCheckpoint",)]
        cells += [str(part.get("steadyState", {}).get(name, "-")) for part in (zero, size)]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    for name, window in size.items():
        if name.startswith("fromCheckpointWalCompression_"):
            lines.append(f"\nAt size, from a checkpoint, wal_compression={name.rsplit('_', 1)[1]}: "
                         f"{window['walBytesPerOrder']} B WAL, {window['fullPageImagesPerOrder']} images, "
                         f"{window['postgresCpuMicrosecondsPerOrder']} us PostgreSQL CPU per order, "
                         f"{window['createsPerSecond']} creates/s")
    lines += ["", "| p99 (ms) | empty | at size |", "|---|---:|---:|"]
    for name in ("replayFromPostgres", "getById", "listPage"):
        lines.append(f"| {name} | {zero['latency'][name]['p99']} | {size['latency'][name]['p99']} |")
    lines += ["", f"Ratios (at size / empty): {results['ratios']}", "",
              f"Disk at size: {size['disk']}", "", f"Load: {results['load']}", "",
              f"Upgrade: {results['upgrade']}"]
    return "\n".join(lines) + "\n"


def main(options: Any, *, say: Callable[[str], None]) -> int:
    import json
    import sys

    results = run(options.at_size, first_seconds=60, steady_seconds=options.at_size_steady_seconds,
                  read_seconds=10, checkpoint_timeout=options.at_size_checkpoint_timeout, say=say,
                  settings=dict(setting.split("=", 1) for setting in options.at_size_setting))
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "atsize-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (options.output / "atsize-latest.md").write_text(markdown(results))
    print(markdown(results))
    print(f"written: {options.output / 'atsize-latest.json'}, {options.output / 'atsize-latest.md'}", file=sys.stderr)
    return 0
