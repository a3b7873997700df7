"""Real PostgreSQL and Redis for the whole run, and copies of the function started from
the Procfile. Each test starts from empty tables and an empty Redis."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import hypothesis
import pytest
import requests

from devserver.copies import FunctionCopy, start_together
from devserver.servers import PostgresServer, RedisServer
from function.migrate import apply_migrations
from hardening.server_errors import LogWatch

ORDER = {"productId": "sku-1", "productQuantity": 2}

# PgBouncer, Redis Sentinel and the many-copies fixtures.
pytest_plugins = ["scaleout_fixtures"]

# Generated tests (Hypothesis, schemathesis) are repeatable by default, so a run passes or
# fails the same way on every machine; HYPOTHESIS_PROFILE=explore draws fresh examples.
hypothesis.settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis.settings.register_profile("explore")
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp root: PostgreSQL may run as another user (see servers.py).
    path = Path(tempfile.mkdtemp(prefix="orders-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def migrated_postgres(directory: Path, **options: Any) -> PostgresServer:
    """A PostgreSQL of our own, started in `directory`, with the schema applied."""
    server = PostgresServer(directory, **options).start()
    connection = server.connect()
    try:
        apply_migrations(connection)
    finally:
        connection.close()
    return server


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[PostgresServer]:
    """Our own PostgreSQL, so a test may stop, pause or restart it."""
    server = migrated_postgres(workdir / "postgres")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def db(postgres: PostgresServer, redis_server: RedisServer) -> Iterator[Database]:
    """Empty orders table and empty Redis before each test; servers up again after it."""
    for server in (postgres, redis_server):
        if not server.running:
            server.start()
        server.resume()
    database = Database(postgres)
    database.execute("TRUNCATE orders, outbox RESTART IDENTITY")
    redis_server.client().flushall()
    yield database
    for server in (postgres, redis_server):
        server.resume()
        if not server.running:
            server.start()


class Database:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def execute(self, sql: str, **params: Any) -> list[list[Any]]:
        connection = self.server.connect()
        try:
            return connection.run(sql, **params)
        finally:
            connection.close()

    def order_count(self, profile: str | None = None) -> int:
        if profile is None:
            return int(self.execute("SELECT count(*) FROM orders")[0][0])
        return int(self.execute("SELECT count(*) FROM orders WHERE profile_id = :p", p=profile)[0][0])


@pytest.fixture(scope="session")
def base_env(postgres: PostgresServer, redis_server: RedisServer) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis_server.url,
        "LOG_LEVEL": "warning",
        "DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
        "DATABASE_STATEMENT_TIMEOUT_SECONDS": "2",
        "REDIS_TIMEOUT_SECONDS": "0.3",
    }


@pytest.fixture(scope="session")
def api_copy(base_env: dict[str, str], workdir: Path) -> Iterator[FunctionCopy]:
    """One copy with default settings, shared by the contract tests."""
    copy = FunctionCopy(base_env, log=workdir / "api-copy.log").start()
    yield copy
    copy.stop()


@pytest.fixture
def api(api_copy: FunctionCopy, db: Database) -> Client:
    return Client(api_copy.url)


_log_numbers = itertools.count()


@pytest.fixture
def start_copies(base_env: dict[str, str], workdir: Path, db: Database) -> Iterator[Callable[..., list[FunctionCopy]]]:
    """Start `count` copies with extra env; all are stopped after the test."""
    started: list[FunctionCopy] = []

    def start(count: int = 1, **env: str) -> list[FunctionCopy]:
        logs = [workdir / f"copy-{next(_log_numbers)}.log" for _ in range(count)]
        copies = start_together({**base_env, **env}, logs)
        started.extend(copies)
        return copies

    yield start
    for copy in started:
        copy.kill()


class Client:
    """requests, with the order routes spelled out."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def create(
        self, body: Any = ORDER, *, key: str | None = "auto", profile: str | None = "alice",
        headers: dict[str, str] | None = None, timeout: float = 30, **kwargs: Any,
    ) -> requests.Response:
        sent = {"Content-Type": "application/json"}
        if profile is not None:
            sent["X-Profile-Id"] = profile
        if key is not None:
            sent["Idempotency-Key"] = str(uuid.uuid4()) if key == "auto" else key
        sent.update(headers or {})
        if "data" not in kwargs:
            kwargs["json"] = body
        return self.http.post(self.url + "/orders", headers=sent, timeout=timeout, **kwargs)

    def outcome_count(self, outcome: str) -> float:
        """This copy's orders_idempotency_outcomes_total for one outcome, from /metrics."""
        text = self.get("/metrics", profile=None).text
        match = re.search(rf'orders_idempotency_outcomes_total{{outcome="{outcome}"}} (\S+)', text)
        return float(match.group(1)) if match else 0.0

    def get(self, path: str, *, profile: str | None = "alice", **kwargs: Any) -> requests.Response:
        headers = {"X-Profile-Id": profile} if profile is not None else {}
        headers.update(kwargs.pop("headers", {}))
        return self.http.get(self.url + path, headers=headers, timeout=30, **kwargs)


def sample(exposition: str, name: str, labels: str = "") -> float:
    """One sample of a Prometheus text exposition (`labels` as printed: `{kind="timeout"}`); 0 if absent."""
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


CREATE_EVENT = "com.example.order.create"


def binary_event(
    client: Client, data: object, *, path: str = "/", event_id: str | None = None,
    source: str = "/shop/checkout", type_: str = CREATE_EVENT, headers: dict[str, str] | None = None,
    **extensions: str,
) -> requests.Response:
    """A binary-mode CloudEvent, as Knative's Broker delivers it; `extensions` become
    `ce-` attributes, `headers` go as they are (a W3C traceparent, say)."""
    sent = {
        "ce-specversion": "1.0", "ce-type": type_, "ce-source": source,
        "ce-id": event_id or str(uuid.uuid4()), "Content-Type": "application/json",
        **{f"ce-{name}": value for name, value in extensions.items()}, **(headers or {}),
    }
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return client.http.post(client.url + path, data=body, headers=sent, timeout=30)


def fresh_database(postgres: PostgresServer, name: str) -> str:
    """An empty database on the test PostgreSQL (no schema yet); its URL."""
    admin = postgres.connect()
    try:
        admin.run(f"DROP DATABASE IF EXISTS {name}")
        admin.run(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    return postgres.url.rsplit("/", 1)[0] + "/" + name


def assert_problem(response: requests.Response, status: int, *words: str) -> dict[str, Any]:
    """A problem+json answer with this status whose detail says what is wrong."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["type"]
    text = (problem["detail"] + " " + " ".join(e["field"] for e in problem.get("errors", []))).lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in {problem}"
    return problem


@pytest.fixture(scope="module", autouse=True)
def no_copy_answered_a_500(workdir: Path) -> Iterator[None]:
    """After each test module: no copy it talked to logged a 500 or a crash. Each copy
    has its own log (the shared api copy's is read from where the module started)."""
    watch = LogWatch(workdir)
    watch.mark()
    yield
    errors = watch.new_errors()
    assert not errors, f"copies answered 500 or crashed: {errors}"


@pytest.fixture(autouse=True)
def isolate_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
