"""The image built from the real Dockerfile and run the way Knative runs it (PORT and K_*
set, read-only root filesystem with /tmp writable, the image's own user), against the
tests' own PostgreSQL and Redis on the host's network."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, cast

import pytest
import requests

from devserver import container
from devserver.container import ContainerCopy
from devserver.servers import PostgresServer, RedisServer
from devserver.waiting import wait_until
from function.migrate import pending_files
from support import Database, ORDER, fresh_database

MISSING = container.missing_tools()
pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.long,
    pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}: {container.INSTALL}"),
]
_numbers = itertools.count()


@pytest.fixture(scope="module")
def image() -> str:
    seconds = container.build_image()
    print(f"\nimage built in {seconds:.1f} s, {container.image_size_bytes(container.IMAGE) / 1e6:.0f} MB")
    return container.IMAGE


@pytest.fixture
def start_container(image: str, base_env: dict[str, str], workdir: Path, db: Any) -> Iterator[Any]:
    """Containers of the image with the tests' settings plus `env`; killed after the test.
    Their logs are named *copy*.log, so the 500 watch in conftest reads them too."""
    started: list[ContainerCopy] = []

    def start(*, wait: bool = True, **env: str) -> ContainerCopy:
        copy = ContainerCopy({**base_env, **env}, image=image,
                             log=workdir / f"container-copy-{next(_numbers)}.log")
        started.append(copy)
        return copy.start(wait=wait)

    yield start
    for copy in started:
        copy.kill()


def log_records(copy: ContainerCopy) -> list[dict[str, Any]]:
    """Every line of the container's output, each of which must be one JSON object."""
    assert copy.log is not None
    lines = [line for line in copy.log.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line[:300]!r}")
        assert isinstance(record, dict) and {"time", "level", "message"} <= set(record), line
        records.append(record)
    return records


def logged(copy: ContainerCopy, message: str) -> bool:
    return any(record["message"] == message for record in log_records(copy))


def create(copy: ContainerCopy, key: str, timeout: float = 30) -> requests.Response:
    return requests.post(copy.url + "/orders", json=ORDER, timeout=timeout,
                         headers={"X-Profile-Id": "image", "Idempotency-Key": key})


def test_the_image_serves_a_create_and_its_replay_read_only_as_its_own_user_with_json_lines_only(
    start_container,
) -> None:
    copy = start_container(LOG_LEVEL="info")

    assert requests.get(copy.url + "/healthz", timeout=10).status_code == 200
    first, replay = create(copy, "image-1"), create(copy, "image-1")
    assert first.status_code == replay.status_code == 201
    assert replay.json()["orderId"] == first.json()["orderId"]

    # PID 1 (gunicorn) runs as the image's numeric user; nothing outside /tmp is writable.
    assert copy.exec("python", "-c", "import os; print(os.stat('/proc/1').st_uid)").strip() == "10001"
    wrote = copy.exec("sh", "-c", "for d in /app /opt/venv /nonexistent /; do touch $d/x 2>/dev/null && echo $d; done; true")
    assert wrote.strip() == ""
    env = copy.exec("env")
    assert all(f"{name}=" in env for name in ("PORT", *container.KNATIVE_ENV))

    records = log_records(copy)
    assert not [record for record in records if record["level"] in ("warning", "error", "critical")]
    assert any(record["message"] == "serving" for record in records)


def test_the_image_holds_no_installer_compiler_or_cache(image: str) -> None:
    checks = ("import importlib.util, shutil, os; "
              "print(importlib.util.find_spec('pip'), shutil.which('gcc') or shutil.which('cc'), "
              "os.path.exists('/root/.cache'))")
    found = container.podman("run", "--rm", "--read-only", image, "python", "-c", checks).strip()
    assert found == "None None False"


def test_sigterm_lets_requests_in_flight_finish_and_the_container_exit_0_within_the_grace_period(
    start_container, postgres: PostgresServer, redis_server: RedisServer, db: Database,
) -> None:
    # given: a copy whose database connections are open, and a PostgreSQL that then stops
    # answering, so three creates hang in flight (each has claimed its key in Redis)
    copy = start_container(LOG_LEVEL="info", GUNICORN_LOG_LEVEL="info", DATABASE_STATEMENT_TIMEOUT_SECONDS="20",
                           DATABASE_CONNECT_TIMEOUT_SECONDS="20")
    assert create(copy, "warm").status_code == 201
    redis = redis_server.client()
    redis.flushall()
    keys = [f"in-flight-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    answers: dict[str, requests.Response] = {}
    postgres.pause()
    try:
        threads = [threading.Thread(target=lambda key=key: answers.__setitem__(key, create(copy, key, 60)))
                   for key in keys]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(cast(list[bytes], redis.keys("idem:v2:*"))) == len(keys), what="three claims in Redis",
                   timeout_seconds=30)

        # when: the kubelet's SIGTERM arrives, and only then PostgreSQL answers again
        signalled = time.monotonic()
        copy.signal(signal.SIGTERM)
        wait_until(lambda: logged(copy, "Shutting down"), what="uvicorn shutting down", timeout_seconds=30,
                   still_running=lambda: copy.running, log=copy.log)
    finally:
        postgres.resume()
    for thread in threads:
        thread.join(timeout=60)

    # then: every request in flight got its order, and the container left cleanly in time
    assert {key: answers[key].status_code for key in keys} == {key: 201 for key in keys}
    assert copy.process is not None
    assert copy.process.wait(timeout=container.GRACE_SECONDS) == 0
    assert time.monotonic() - signalled < container.GRACE_SECONDS
    assert db.order_count("image") == len(keys) + 1
    assert logged(copy, "Handling signal: term")  # gunicorn's own line, in the same JSON shape


def test_two_containers_started_at_once_apply_each_migration_once(start_container, postgres: PostgresServer) -> None:
    url = fresh_database(postgres, "image_twice")
    copies = [start_container(wait=False, LOG_LEVEL="info", DATABASE_URL=url) for _ in range(2)]
    for copy in copies:
        copy.wait_ready(timeout_seconds=60)

    applied = [version for copy in copies for record in log_records(copy)
               if record["message"] == "schema up to date" for version in record.get("applied", [])]
    # A new database gets the contract steps at once: no older copy can know it.
    assert sorted(applied) == [path.stem for path in pending_files(set(), contract=True)]
    assert all(create(copy, f"twice-{n}").status_code == 201 for n, copy in enumerate(copies))
