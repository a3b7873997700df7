"""What the tests share beyond fixtures: the order they send, a client for the routes,
direct reads of PostgreSQL, the one reset of the stores between tests, and the checks
several modules make (a problem+json answer, one order per key after a storm)."""

from __future__ import annotations

import json
import socket
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import requests

from devserver.servers import PostgresServer, RedisServer
from function.migrate import apply_migrations
from function.records import KEY_PREFIX, InFlight, decode, redis_key
from loadgen.audit import audit
from loadgen.exposition import outcome_counts, sample
from loadgen.storm import Run

ORDER = {"productId": "sku-1", "productQuantity": 2}


def migrated_postgres(directory: Path, **options: Any) -> PostgresServer:
    """A PostgreSQL of our own, started in `directory`, with the schema applied."""
    server = PostgresServer(directory, **options).start()
    connection = server.connect()
    try:
        apply_migrations(connection)
    finally:
        connection.close()
    return server


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


class Client:
    """requests, with the order routes spelled out. `http` is a requests.Session for a
    copy's URL, or the in-process app's session (tests/inprocess.py), which takes the
    same calls: a test runs on either by the fixture it names (`api` or `app`)."""

    def __init__(self, url: str, *, http: Any = None) -> None:
        self.url = url
        self.http = requests.Session() if http is None else http

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
        return outcome_counts(self.get("/metrics", profile=None).text)[outcome]

    def get(self, path: str, *, profile: str | None = "alice", **kwargs: Any) -> requests.Response:
        headers = {"X-Profile-Id": profile} if profile is not None else {}
        headers.update(kwargs.pop("headers", {}))
        return self.http.get(self.url + path, headers=headers, timeout=30, **kwargs)


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


def empty_stores(database: Database, redis_server: RedisServer) -> None:
    """The per-test reset: no orders and no order events (numbers from 1 again) and nothing in Redis."""
    database.execute("TRUNCATE orders, outbox RESTART IDENTITY")
    redis_server.client().flushall()


def assert_one_order_per_key(run: Run, db: Database) -> None:
    """After a storm: PostgreSQL holds exactly one order per key and every acknowledged
    one, and every 201 for a key carried the same order, all but one as replays."""
    connection = db.server.connect()
    try:
        audited = audit(connection, profile_pattern=run.profile, acknowledged=run.acknowledged())
    finally:
        connection.close()
    assert audited.problems() == []
    assert set(audited.stored) == {(run.profile, key) for key in run.key_names}  # no key without its order
    answers: dict[int, list[tuple[bytes, bool]]] = defaultdict(list)
    for result in run.results:
        if result.final.status == 201:
            answers[result.planned.key_index].append((result.body, result.replayed))
    for key_index, bodies in answers.items():
        assert len({body for body, _ in bodies}) == 1, f"key {key_index}: several different orders answered"
        assert sum(replayed for _, replayed in bodies) == len(bodies) - 1  # all but the creator's are replays


def metric(client: Client, name: str, labels: str = "") -> float:
    """One sample of the copy's own /metrics (see loadgen.exposition.sample)."""
    return sample(client.get("/metrics", profile=None).text, name, labels)


def idempotency_records(redis_server: RedisServer) -> list[bytes]:
    """The names of the idempotency records (claims and answers) Redis holds now."""
    return cast(list[bytes], redis_server.client().keys(KEY_PREFIX + b"*"))


def redis_script_calls(redis_server: RedisServer) -> int:
    """Lua script calls Redis has run (INFO commandstats): every claim-or-read, finish
    and release is one, so a rising count shows a duplicate polling for its original."""
    stats = cast(dict[str, Any], redis_server.client().info("commandstats"))  # redis-py types a reply as maybe-awaitable
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


def claim_held(redis_server: RedisServer, profile: str, key: str) -> bool:
    """Whether some request holds the key's claim in Redis right now."""
    raw = cast(bytes | None, redis_server.client().get(redis_key(profile, key)))
    return raw is not None and isinstance(decode(raw), InFlight)


def accepts_connections(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True
