"""Real PostgreSQL and Redis for the whole run, and copies of the function started from
the Procfile. Each test starts from empty tables and an empty Redis.

Fixtures only: what tests import lives in support.py."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import hypothesis
import pytest

from devserver.copies import FunctionCopy, start_together
from devserver.netfaults import NetworkFaults
from devserver.netfaults import unavailable_reason as netfaults_unavailable
from devserver.servers import PostgresServer, RedisServer
from devserver.waiting import wait_until
from hardening.server_errors import LogWatch
from inprocess import no_500, serving_in_process
from support import Client, Database, empty_stores, migrated_postgres

# PgBouncer, Redis Sentinel and the many-copies fixtures; a Redis Cluster.
pytest_plugins = ["scaleout_fixtures", "cluster_fixtures"]

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
    empty_stores(database, redis_server)
    yield database
    for server in (postgres, redis_server):
        server.resume()
        if not server.running:
            server.start()


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


@pytest.fixture(scope="session")
def app_in_process(base_env: dict[str, str]) -> Iterator[Client]:
    """The function's real ASGI app in this process, default settings, lifespan run,
    shared by the in-process contract tests (tests/inprocess.py)."""
    with serving_in_process(base_env) as client:
        yield client


@pytest.fixture
def app(app_in_process: Client, db: Database) -> Iterator[Client]:
    """Like `api`, in-process: the same Client calls, answered without a server process.
    Ready first, as a copy is when started: after an earlier test restarted PostgreSQL the
    shared app's pool holds dead connections, found on use (database.py retries a dead one
    once, on the next pooled one, which may be dead too: a 503), so /healthz is asked
    until PostgreSQL answers."""
    wait_until(lambda: app_in_process.get("/healthz", profile=None).status_code == 200,
               what="the in-process app ready", timeout_seconds=30)
    yield app_in_process
    no_500(app_in_process)


@pytest.fixture
def serve_in_process(base_env: dict[str, str], db: Database) -> Iterator[Callable[..., Client]]:
    """Like `start_copies` for one copy, in-process: the app with extra env (settings
    given this way are parsed by the same Settings.from_env a copy runs)."""
    started: list[Client] = []
    with contextlib.ExitStack() as apps:

        def serve(**env: str) -> Client:
            client = apps.enter_context(serving_in_process({**base_env, **env}))
            started.append(client)
            return client

        yield serve
    for client in started:  # after each app's lifespan ended: what it logged then counts too
        no_500(client)


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


@pytest.fixture(scope="module", autouse=True)
def no_copy_answered_a_500(workdir: Path) -> Iterator[None]:
    """After each test module: no copy it talked to logged a 500 or a crash. Each copy
    has its own log (the shared api copy's is read from where the module started)."""
    watch = LogWatch(workdir)
    watch.mark()
    yield
    errors = watch.new_errors()
    assert not errors, f"copies answered 500 or crashed: {errors}"


# A test that names one of these talks to a copy of its own process (or several).
PROCESS_FIXTURES = frozenset({"api", "api_copy", "start_copies", "pooled_copies", "pooled_db"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks `process` what a copy serves (by the fixtures it names, or the multiprocess
    mark): `make test-fast` runs the rest, the in-process and pure tests.

    Files marked `long` go first (a stable sort keeps each file together): pytest-xdist
    hands out files in this order (`--no-loadscope-reorder`), and a minute-long file
    picked up last would run alone while the other workers idle."""
    for item in items:
        if item.get_closest_marker("multiprocess") or PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(autouse=True)
def isolate_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def network_faults() -> Iterator[NetworkFaults]:
    """Black holes and resets of local ports (devserver/netfaults.py); every rule is
    removed after the test, whatever happened in it. Skips visibly where nft or root is missing."""
    reason = netfaults_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with NetworkFaults() as faults:
        yield faults
