"""What a copy does before it serves: settings read and checked, the schema applied
outside request time, and a malformed value stopping the start-up with one clear line."""

from __future__ import annotations

import threading
from pathlib import Path

import pg8000.native
import pytest
import requests

from devserver.copies import FunctionCopy
from devserver.servers import PostgresServer, RedisServer
from devserver.waiting import wait_until
from function.migrate import ADVISORY_LOCK_ID
from support import fresh_database

pytestmark = pytest.mark.multiprocess

PASSWORD = "hunter2-not-to-be-shown"
GOOD = {"DATABASE_URL": f"postgresql://orders:{PASSWORD}@127.0.0.1:5/orders", "REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:6/0"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", f"postgresql://orders:{PASSWORD}@db:fivefourthreetwo/orders"),
        ("DATABASE_URL", f"postgresql://orders:{PASSWORD}@db:99999/orders"),
        ("DATABASE_URL", f"postgresql://orders:{PASSWORD}@db:5432/orders?sslmode=sometimes"),
        ("DATABASE_URL", f"postgresql://orders:{PASSWORD}@db:5432/orders?sslmod=require"),
        ("DATABASE_URL", f"mysql://orders:{PASSWORD}@db:5432/orders"),
        ("REDIS_URL", f"redis://:{PASSWORD}@cache:six/0"),
        ("REDIS_URL", f"redis://:{PASSWORD}@cache:6379/zero"),
        ("REDIS_URL", f"redis://:{PASSWORD}@cache:6379/0?socket_timeout=soon"),
        ("REDIS_URL", f"redis+sentinel://:{PASSWORD}@s1:26379,s2/orders"),
        ("REDIS_URL", f"redis+sentinel://:{PASSWORD}@s1:26379"),
        ("REDIS_URL", f"redis+cluster://:{PASSWORD}@n1:7000,n2:7001/0"),
        ("REDIS_URL", f"rediss+cluster://:{PASSWORD}@n1:7000,n2"),
        ("IDEMPOTENCY_WAIT_SECONDS", "nan"),
        ("IDEMPOTENCY_WAIT_SECONDS", "inf"),
        ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "Infinity"),
        ("REDIS_TIMEOUT_SECONDS", "-nan"),
        ("IDEMPOTENCY_LEASE_SECONDS", "30.5"),
        ("DATABASE_POOLING", "session"),
    ],
)
def test_a_malformed_setting_stops_the_start_up_with_one_line_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    log = tmp_path / "copy.log"
    copy = FunctionCopy({**GOOD, variable: value}, log=log).start(wait=False)

    assert copy.process is not None and copy.process.wait(timeout=60) != 0
    output = log.read_text()
    assert f"configuration error: {variable}" in output
    assert "Traceback" not in output and PASSWORD not in output and value not in output.replace(variable, "")


def test_the_schema_is_applied_before_the_first_request_outside_its_timeouts(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    url = fresh_database(postgres, "slow_start")
    # Another copy's migration holds the schema lock for 3 s: far past this copy's 1 s
    # statement and lock timeouts, which would fail a migration run inside a request.
    holder = pg8000.native.Connection("postgres", host="127.0.0.1", port=postgres.port, database="slow_start")
    holder.run("BEGIN")
    holder.run("SELECT pg_advisory_xact_lock(:lock)", lock=ADVISORY_LOCK_ID)
    release = threading.Timer(3.0, lambda: (holder.run("COMMIT"), holder.close()))
    release.start()
    copy = FunctionCopy(
        {"DATABASE_URL": url, "REDIS_URL": redis_server.url, "DATABASE_STATEMENT_TIMEOUT_SECONDS": "1"},
        log=tmp_path / "copy.log",
    ).start(wait=False)
    try:
        # No request has been sent: the schema appears by itself once the lock is free.
        wait_until(lambda: _schema_applied(postgres.port, "slow_start"), what="the schema", timeout_seconds=30,
                   poll_seconds=0.1)
        copy.wait_ready()
        created = requests.post(
            copy.url + "/orders", json={"productQuantity": 1},
            headers={"X-Profile-Id": "slow", "Idempotency-Key": "first"}, timeout=10,
        )
        assert created.status_code == 201, created.text
    finally:
        release.join()
        copy.stop()


def _schema_applied(port: int, database: str) -> bool:
    connection = pg8000.native.Connection("postgres", host="127.0.0.1", port=port, database=database)
    try:
        return bool(connection.run("SELECT to_regclass('public.orders') IS NOT NULL")[0][0])
    finally:
        connection.close()
