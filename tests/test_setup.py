"""What a new user meets first: `make run`, the pip-packaged servers, start-up errors,
and a type-checked function."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pg8000.native
import pytest
import requests

from devserver.binaries import postgres_major_version
from devserver.copies import PROJECT_ROOT, FunctionCopy
from devserver.servers import PostgresServer, RedisServer, free_port
from devserver.waiting import wait_until
from function.migrate import apply_migrations
from support import Database, fresh_database

pytestmark = pytest.mark.multiprocess


def test_the_pip_packaged_servers_run_the_function_when_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_EMBEDDED_SERVERS", "pip")
    workdir = Path(tempfile.mkdtemp(prefix="orders-pip-"))
    postgres, redis = PostgresServer(workdir / "pg"), RedisServer(workdir / "redis")
    assert "site-packages" in str(postgres.bin_dir) and "site-packages" in str(redis.binary)
    postgres.start()
    redis.start()
    copy = None
    try:
        connection = postgres.connect()
        apply_migrations(connection)
        connection.close()
        copy = FunctionCopy({"DATABASE_URL": postgres.url, "REDIS_URL": redis.url}).start()
        headers = {"X-Profile-Id": "pip", "Idempotency-Key": "one"}
        first = requests.post(copy.url + "/orders", json={"productQuantity": 1}, headers=headers, timeout=10)
        again = requests.post(copy.url + "/orders", json={"productQuantity": 1}, headers=headers, timeout=10)
        assert first.status_code == 201 and again.content == first.content
    finally:
        if copy:
            copy.stop()
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_data_directory_keeps_opening_with_the_major_version_that_made_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A first `make run` on pgserver's PostgreSQL, then one with (maybe another major
    # version of) PostgreSQL installed: the data directory opens only with its own.
    monkeypatch.setenv("ORDERS_EMBEDDED_SERVERS", "pip")
    workdir = Path(tempfile.mkdtemp(prefix="orders-pg-version-"))
    first = PostgresServer(workdir / "pg").start()
    try:
        first.connect().run("CREATE TABLE kept (n int)")
    finally:
        first.stop()
    monkeypatch.delenv("ORDERS_EMBEDDED_SERVERS")
    second = PostgresServer(workdir / "pg")
    try:
        second.start()
        assert second.connect().run("SELECT count(*) FROM kept") == [[0]]
        assert postgres_major_version(second.bin_dir) == (workdir / "pg" / "data" / "PG_VERSION").read_text().strip()
    finally:
        second.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_make_run_serves_a_function_to_curl_and_ctrl_c_stops_everything() -> None:
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="orders-run-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    run = subprocess.Popen(
        [sys.executable, "-m", "devserver"], cwd=PROJECT_ROOT, text=True,
        env={**env, "PORT": str(port), "ORDERS_STATE_DIR": str(state)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        printed = _read_until(run, "/healthz", timeout_seconds=60)
        assert f"curl -i -X POST http://127.0.0.1:{port}/orders" in printed
        answer = requests.post(
            f"http://127.0.0.1:{port}/orders", json={"productId": "sku-42", "productQuantity": 2},
            headers={"X-Profile-Id": "alice", "Idempotency-Key": "first-run"}, timeout=10,
        )
        assert answer.status_code == 201
        server_ports = [int(p) for p in (_port_of(printed, "PostgreSQL"), _port_of(printed, "Redis"))]

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        for busy in (port, *server_ports):
            assert not _accepts(busy), f"port {busy} still served after Ctrl-C"
    finally:
        if run.poll() is None:  # the test failed before Ctrl-C: still stop what it started
            run.send_signal(signal.SIGINT)
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill()
        shutil.rmtree(state, ignore_errors=True)


def test_a_missing_database_url_stops_the_start_up_naming_it(tmp_path: Path) -> None:
    log = tmp_path / "copy.log"
    copy = FunctionCopy({"DATABASE_URL": "", "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}, log=log)
    copy.start(wait=False)
    assert copy.process is not None and copy.process.wait(timeout=30) != 0
    output = log.read_text()
    assert "DATABASE_URL is required" in output and "hunter2" not in output


def test_the_function_and_its_tools_type_check() -> None:
    typed = next(line for line in (PROJECT_ROOT / "Makefile").read_text().splitlines() if line.startswith("TYPED"))
    packages = typed.split(":=")[1].split()
    assert {"function", "devserver", "loadgen", "demo", "bench", "soak", "tests"} <= set(packages)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", *packages], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout


def _read_until(process: subprocess.Popen[str], marker: str, timeout_seconds: float) -> str:
    assert process.stdout is not None
    printed, deadline = "", time.monotonic() + timeout_seconds
    while marker not in printed:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise AssertionError(f"make run exited early:\n{printed}")
        printed += line
        assert time.monotonic() < deadline, printed
    return printed


def _port_of(printed: str, server: str) -> str:
    line = next(line for line in printed.splitlines() if line.startswith(server))
    return line.split("127.0.0.1:")[1].split("/")[0].split()[0]


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_copies_starting_together_on_an_empty_database_apply_the_schema_once(
    start_copies: Callable[..., list[FunctionCopy]], postgres: PostgresServer, redis_server: RedisServer
) -> None:
    copies = start_copies(4, DATABASE_URL=fresh_database(postgres, "fresh"))

    # The four copies started together; each applied the schema (or found it applied)
    # before serving: ask all four at once.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda c: requests.get(c.url + "/healthz", timeout=30).status_code, copies))
    created = requests.post(
        copies[0].url + "/orders", json={"productQuantity": 1},
        headers={"X-Profile-Id": "fresh", "Idempotency-Key": "k"}, timeout=10,
    )

    assert statuses == [200, 200, 200, 200]
    assert created.status_code == 201
    connection = pg8000.native.Connection("postgres", host="127.0.0.1", port=postgres.port, database="fresh")
    versions = connection.run("SELECT version FROM schema_migrations ORDER BY version")
    connection.close()
    # A database this start-up created: the contract steps too (no older copy knows it).
    assert versions == [["0001_create_orders"], ["0002_create_outbox"], ["0003_order_ids_v7"],
                        ["0004_key_digest_index"], ["0005_drop_profile_key_constraint"]]


def test_python_m_function_migrate_reports_an_up_to_date_schema(postgres: PostgresServer) -> None:
    migrate = subprocess.run(
        [sys.executable, "-m", "function.migrate"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env={**os.environ, "DATABASE_URL": postgres.url},
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "schema is up to date" in migrate.stdout


def test_the_dockerfile_command_serves_the_function_on_port(base_env: dict[str, str], db: Database, tmp_path: Path) -> None:
    cmd_line = next(line for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines()
                    if line.startswith("CMD "))
    command = json.loads(cmd_line[len("CMD "):])
    port = free_port()
    env = {**os.environ, **base_env, "PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _accepts(port), what="the Dockerfile's command", timeout_seconds=30,
                   still_running=lambda: process.poll() is None)
        created = requests.post(f"http://127.0.0.1:{port}/orders", json={"productQuantity": 1},
                                headers={"X-Profile-Id": "image", "Idempotency-Key": "k"}, timeout=10)
        assert created.status_code == 201
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0  # gunicorn as PID 1 exits cleanly on SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
