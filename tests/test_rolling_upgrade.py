"""A rolling update across the schema change of issue 20 (UUIDv7 ids, the key digest
index): a copy of the previous version and a copy of this one serve one database at once,
existing orders keep their ids and answers, and the contract step comes after the last
old copy is gone.

The previous version is the commit before the change, taken from git history with
`git archive`; without git or that commit (a tarball, a shallow clone) the test skips
saying so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from devserver.copies import PROJECT_ROOT, FunctionCopy, web_command
from devserver.servers import PostgresServer, RedisServer
from support import ORDER, Client, fresh_database

# The last commit whose schema is 0001-0002: orders_profile_key_unique, random v4 ids.
pytestmark = pytest.mark.process  # copies of both versions, each a process of its own

PREVIOUS_VERSION = "5abadc8"
PREVIOUS_FILES = ["function", "postgres", "Procfile"]


@pytest.fixture(scope="module")
def previous_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous version's function/, postgres/ and Procfile, in a directory of their own."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("the previous version comes from git history: apt-get install -y git")
    known = subprocess.run([git, "-C", str(PROJECT_ROOT), "cat-file", "-e", PREVIOUS_VERSION + "^{commit}"],
                           capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_VERSION} (the previous version) is not in this clone's history: "
                    "git fetch --unshallow")
    directory = tmp_path_factory.mktemp("previous-version")
    archive = directory / "previous.tar"
    subprocess.run([git, "-C", str(PROJECT_ROOT), "archive", "-o", str(archive), PREVIOUS_VERSION, *PREVIOUS_FILES],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(directory / "tree", filter="data")
    return directory / "tree"


def previous_copy(tree: Path, env: dict[str, str], log: Path) -> FunctionCopy:
    """The previous version's Procfile line, run in its own tree with only its own code importable."""
    command = f"sh -c 'cd {tree} && exec {web_command(tree / 'Procfile')}'"
    return FunctionCopy({**env, "PYTHONPATH": str(tree)}, log=log, command=command)


@pytest.fixture
def rolling(
    postgres: PostgresServer, redis_server: RedisServer, base_env: dict[str, str], workdir: Path,
    previous_version: Path,
) -> Iterator[tuple[dict[str, str], list[FunctionCopy]]]:
    """A database of its own (the schema made by the previous version); copies stopped after."""
    env = {**base_env, "DATABASE_URL": fresh_database(postgres, "rolling_upgrade")}
    redis_server.client().flushall()
    started: list[FunctionCopy] = []
    yield env, started
    for copy in started:
        copy.kill()


def indexes(postgres: PostgresServer) -> set[str]:
    connection = pg_connect(postgres)
    try:
        return {row[0] for row in connection.run("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")}
    finally:
        connection.close()


def pg_connect(postgres: PostgresServer):
    import pg8000.native

    return pg8000.native.Connection(user="postgres", host="127.0.0.1", port=postgres.port, database="rolling_upgrade")


def test_previous_and_new_copies_share_one_database_then_contract(
    rolling: tuple[dict[str, str], list[FunctionCopy]], postgres: PostgresServer, redis_server: RedisServer,
    previous_version: Path, workdir: Path,
) -> None:
    env, started = rolling
    old = previous_copy(previous_version, env, workdir / "previous-copy.log").start()
    started.append(old)
    old_client = Client(old.url)
    before = {f"before-{n}": old_client.create(key=f"before-{n}") for n in range(5)}
    assert all(response.status_code == 201 for response in before.values())
    assert all(uuid.UUID(r.json()["orderId"]).version == 4 for r in before.values())
    assert indexes(postgres) == {"orders_pkey", "orders_profile_key_unique", "orders_profile_newest"}

    # The new version starts beside it: expand only. One unique index, the old constraint,
    # which the old copy's ON CONFLICT names: a second one would make its race with a new
    # copy on one key a unique violation (a 500) instead of a skipped row.
    new = FunctionCopy(env, log=workdir / "new-copy.log").start()
    started.append(new)
    new_client = Client(new.url)
    assert indexes(postgres) == {"orders_pkey", "orders_profile_key_unique", "orders_profile_newest"}

    # Existing orders: the same bytes from PostgreSQL through either copy (Redis lost them).
    redis_server.client().flushall()
    for key, original in before.items():
        for client in (new_client, old_client):
            replay = client.create(key=key)
            assert replay.status_code == 201 and replay.content == original.content
            assert replay.headers["Idempotent-Replayed"] == "true"
        assert new_client.get(f"/orders/{original.json()['orderId']}").content == original.content

    # New keys, each sent to both copies at once, some also again after Redis lost them:
    # one order per key, every answer carrying it; both versions now make v7 ids.
    keys = [f"during-{n}" for n in range(40)]
    sends = [(client, key) for key in keys for client in (old_client, new_client)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda send: (send[1], send[0].create(key=send[1])), sends))
    redis_server.client().flushall()
    answers += [(key, client.create(key=key)) for key in keys[:10] for client in (new_client, old_client)]
    by_key: dict[str, set[str]] = {}
    for key, response in answers:
        assert response.status_code == 201, response.text
        by_key.setdefault(key, set()).add(response.json()["orderId"])
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert all(uuid.UUID(next(iter(ids))).version == 7 for ids in by_key.values())
    connection = pg_connect(postgres)
    try:
        stored = connection.run("SELECT idempotency_key, count(*) FROM orders WHERE profile_id = 'alice'"
                                " GROUP BY idempotency_key HAVING count(*) > 1")
        by_digest = connection.run(
            "SELECT count(*) FROM orders WHERE CAST(md5(profile_id || '/' || idempotency_key) AS uuid)"
            " = ANY(ARRAY(SELECT CAST(md5('alice/' || k) AS uuid) FROM unnest(CAST(:keys AS text[])) AS k))",
            keys=keys)
    finally:
        connection.close()
    assert stored == [] and by_digest == [[len(keys)]]

    # The last old copy is gone: the contract step builds the digest index and drops the constraint only it needed.
    old.stop()
    started.remove(old)
    contract = subprocess.run([sys.executable, "-m", "function.migrate", "--contract"], cwd=PROJECT_ROOT,
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert contract.returncode == 0, contract.stderr
    assert "0004_key_digest_index" in contract.stdout and "0005_drop_profile_key_constraint" in contract.stdout
    assert indexes(postgres) == {"orders_pkey", "orders_profile_newest", "orders_key_digest"}
    redis_server.client().flushall()
    for key, original in before.items():
        assert new_client.create(key=key).content == original.content
    first, again = new_client.create(key="after-contract"), None
    redis_server.client().flushall()
    again = new_client.create(key="after-contract")
    assert first.status_code == 201 and again.content == first.content
    assert new_client.create(ORDER, key="after-contract", profile="bob").json()["orderId"] != first.json()["orderId"]


def test_an_interrupted_index_build_is_dropped_and_built_again(postgres: PostgresServer) -> None:
    """CREATE INDEX CONCURRENTLY stopped half-way (lock_timeout, a crash) leaves an INVALID
    index that IF NOT EXISTS would take for built: the next migration run rebuilds it."""
    from function.migrate import apply_migrations

    fresh_database(postgres, "rolling_upgrade")
    connection = pg_connect(postgres)
    try:
        assert apply_migrations(connection)[-1] == "0005_drop_profile_key_constraint"  # a new database: contracted
        connection.run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'orders_key_digest'::regclass")
        connection.run("DELETE FROM schema_migrations WHERE version = '0004_key_digest_index'")
        assert apply_migrations(connection, contract=True) == ["0004_key_digest_index"]
        valid = connection.run("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_key_digest'::regclass")
    finally:
        connection.close()
    assert valid == [[True]]


def test_a_key_whose_row_another_order_holds_is_refused_never_answered_with_that_order(api: Client, db) -> None:
    """The conflict path compares profile and key, not just the index entry: here every
    new order gets the same id (a stand-in for two keys sharing a digest), so the second
    key's INSERT is skipped by a conflict that is not its own. It gets a 400 asking for
    another key, never the first key's order."""
    first = api.create(key="first")
    db.execute(f"ALTER TABLE orders ALTER COLUMN order_id SET DEFAULT '{first.json()['orderId']}'::uuid")
    try:
        second = api.create(key="second")
    finally:
        db.execute("ALTER TABLE orders ALTER COLUMN order_id SET DEFAULT orders_uuid_v7()")
    assert first.status_code == 201
    assert second.status_code == 400, second.text
    assert first.json()["orderId"] not in second.text
    assert "another key" in second.json()["detail"]
    assert api.create(key="second").status_code == 201  # the key itself was never taken
