"""Schema migrations: the versioned SQL files in postgres/migrations, applied in order,
each once, under an advisory lock so many copies starting together apply them once.

Expand and contract (docs/operations.md, "Upgrading a running fleet"): the files in
postgres/migrations are the expand steps, safe while copies of the previous version run;
those in postgres/migrations/contract remove what only the previous version needed, and
are applied by `python -m function.migrate --contract` once no such copy runs (and at
once on a database whose schema this same run created).

A file whose first line is `-- migrate: no-transaction` (CREATE INDEX CONCURRENTLY cannot
run in a transaction) runs statement by statement outside one, without the lock: its
statements are idempotent (IF NOT EXISTS), and what such a build left half made (an
INVALID index nobody is building) is dropped before it runs again. On a database the same
transaction creates, it runs inside that transaction instead, without CONCURRENTLY.

Run as `python -m function.migrate [--contract]` (reads DATABASE_URL), or on start-up
(AUTO_MIGRATE).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Iterator

import pg8000.native

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "postgres" / "migrations"
CONTRACT_DIR = MIGRATIONS_DIR / "contract"
# Any constant shared by every copy; it names "the orders schema lock".
ADVISORY_LOCK_ID = 7_240_615_001
NO_TRANSACTION = "-- migrate: no-transaction"
_CONCURRENTLY = re.compile(r"\bCONCURRENTLY\b", re.IGNORECASE)
# The migration that creates the schema: applied by this run, the database is new.
FIRST_VERSION = "0001_create_orders"


def pending_files(applied: set[str], *, contract: bool = False) -> list[Path]:
    wanted = sorted(MIGRATIONS_DIR.glob("*.sql"))
    if contract:
        wanted += sorted(CONTRACT_DIR.glob("*.sql"))
    return [path for path in wanted if path.stem not in applied]


def outside_transaction(path: Path) -> bool:
    return path.read_text().startswith(NO_TRANSACTION)


def apply_migrations(
    connection: pg8000.native.Connection, timeout_seconds: float = 60.0, *, contract: bool = False,
) -> list[str]:
    """Apply what is missing; returns the versions applied. Consecutive transactional
    files go in one transaction; a no-transaction file runs on its own between them."""
    versions: list[str] = []
    while True:
        applied, outside = _apply_in_transaction(
            connection, timeout_seconds, contract=contract or FIRST_VERSION in versions)
        versions += applied
        if outside is None:
            return versions
        _apply_outside_transaction(connection, outside, timeout_seconds)
        versions.append(outside.stem)


def _apply_in_transaction(
    connection: pg8000.native.Connection, timeout_seconds: float, *, contract: bool,
) -> tuple[list[str], Path | None]:
    """The pending transactional files up to the first no-transaction one, which is
    returned for the caller to run.

    The lock is transaction-level (released at COMMIT), so it also works through a
    transaction-mode PgBouncer; the timeouts are SET LOCAL for the same reason, and
    replace whatever request timeouts the connection was opened with.
    """
    with _socket_timeout(connection, timeout_seconds + 1.0):
        return _apply(connection, timeout_seconds, contract=contract)


@contextlib.contextmanager
def _socket_timeout(connection: pg8000.native.Connection, seconds: float | None) -> Iterator[None]:
    """pg8000 keeps its connect timeout as the socket's timeout for every read: a lock
    wait longer than that would end as a dead connection, not a lock timeout. The
    migration's own bound holds for its connection meanwhile, then the old one again."""
    raw_socket = getattr(connection, "_usock", None)
    if raw_socket is None:
        yield
        return
    before = raw_socket.gettimeout()
    raw_socket.settimeout(seconds)
    try:
        yield
    finally:
        raw_socket.settimeout(before)


def _apply(
    connection: pg8000.native.Connection, timeout_seconds: float, *, contract: bool,
) -> tuple[list[str], Path | None]:
    timeout_ms = int(timeout_seconds * 1000)
    connection.execute_simple(
        f"BEGIN; SET LOCAL lock_timeout = {timeout_ms}; SET LOCAL statement_timeout = {timeout_ms}"
    )
    try:
        connection.run("SELECT pg_advisory_xact_lock(:lock)", lock=ADVISORY_LOCK_ID)
        connection.run(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in connection.run("SELECT version FROM schema_migrations")}
        # A database this transaction creates is empty and seen by no other copy until it
        # commits: a concurrent build's reason does not apply to it, so its no-transaction
        # files run in here as plain statements, and its contract steps too (no older copy
        # can know it). Nothing then runs outside the lock on a new database: a concurrent
        # build there would wait for another copy's contract transaction and deadlock.
        new_database = FIRST_VERSION not in applied
        versions: list[str] = []
        outside = None
        for path in pending_files(applied, contract=contract or new_database):
            if not outside_transaction(path):
                connection.run(path.read_text())
            elif new_database:
                for statement in _statements(path.read_text()):
                    connection.run(_CONCURRENTLY.sub("", statement))
            else:
                outside = path
                break
            connection.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=path.stem)
            versions.append(path.stem)
        connection.run("COMMIT")
        return versions, outside
    except BaseException:
        try:
            connection.run("ROLLBACK")
        except Exception:  # the connection is being given up; the original error matters
            pass
        raise


# INVALID indexes on our tables that no running CREATE INDEX CONCURRENTLY is building:
# what a build that failed or was interrupted (lock_timeout, a crash) left behind.
_ABANDONED_INDEXES = """
SELECT index.relname FROM pg_index
JOIN pg_class index ON index.oid = pg_index.indexrelid
JOIN pg_class tab ON tab.oid = pg_index.indrelid
WHERE NOT pg_index.indisvalid AND tab.relname IN ('orders', 'outbox')
  AND tab.relnamespace = current_schema()::regnamespace
  AND pg_index.indexrelid NOT IN (SELECT index_relid FROM pg_stat_progress_create_index)
"""


def _apply_outside_transaction(connection: pg8000.native.Connection, path: Path, timeout_seconds: float) -> None:
    """Each statement in autocommit. A concurrent build blocks no create, so it has no
    statement timeout; it waits at most `timeout_seconds` for older transactions."""
    with _socket_timeout(connection, None):  # a build on a big table takes minutes, not the connect timeout
        _run_outside_transaction(connection, path, timeout_seconds)


def _run_outside_transaction(connection: pg8000.native.Connection, path: Path, timeout_seconds: float) -> None:
    connection.run(f"SET lock_timeout = {int(timeout_seconds * 1000)}")
    connection.run("SET statement_timeout = 0")
    try:
        for (name,) in connection.run(_ABANDONED_INDEXES):
            connection.run(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        for statement in _statements(path.read_text()):
            connection.run(statement)
        connection.run("INSERT INTO schema_migrations (version) VALUES (:v) ON CONFLICT DO NOTHING", v=path.stem)
    finally:
        connection.run("RESET lock_timeout")
        connection.run("RESET statement_timeout")


def _statements(sql: str) -> list[str]:
    """A no-transaction file's statements: `;` at a line's end ends one (no functions or
    DO blocks in such files)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip().rstrip(";") for statement in "\n".join(lines).split(";\n") if statement.strip(" \n;")]


def main(argv: list[str] | None = None) -> int:
    from .targets import connect_kwargs
    from .settings import ConfigError, database_target_from

    parser = argparse.ArgumentParser(prog="python -m function.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--contract", action="store_true",
                        help="also apply the contract steps: only once no copy of an older version runs")
    arguments = parser.parse_args(argv)
    try:
        target = database_target_from(os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    connection = pg8000.native.Connection(**connect_kwargs(target, 10))
    try:
        versions = apply_migrations(connection, contract=arguments.contract)
    finally:
        connection.close()
    print("applied: " + ", ".join(versions) if versions else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
