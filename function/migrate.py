"""Schema migrations: the versioned SQL files in postgres/migrations, applied in order,
each once, under an advisory lock so many copies starting together apply them once.

Run as `python -m function.migrate` (reads DATABASE_URL), or on start-up (AUTO_MIGRATE).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import pg8000.native

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "postgres" / "migrations"
# Any constant shared by every copy; it names "the orders schema lock".
ADVISORY_LOCK_ID = 7_240_615_001


def pending_files(applied: set[str]) -> list[Path]:
    return [path for path in sorted(MIGRATIONS_DIR.glob("*.sql")) if path.stem not in applied]


def apply_migrations(connection: pg8000.native.Connection, timeout_seconds: float = 60.0) -> list[str]:
    """Apply what is missing in one transaction; returns the versions applied.

    The lock is transaction-level (released at COMMIT), so it also works through a
    transaction-mode PgBouncer; the timeouts are SET LOCAL for the same reason, and
    replace whatever request timeouts the connection was opened with.
    """
    with _socket_timeout(connection, timeout_seconds + 1.0):
        return _apply(connection, timeout_seconds)


@contextlib.contextmanager
def _socket_timeout(connection: pg8000.native.Connection, seconds: float) -> Iterator[None]:
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


def _apply(connection: pg8000.native.Connection, timeout_seconds: float) -> list[str]:
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
        versions = []
        for path in pending_files(applied):
            connection.run(path.read_text())
            connection.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=path.stem)
            versions.append(path.stem)
        connection.run("COMMIT")
        return versions
    except BaseException:
        try:
            connection.run("ROLLBACK")
        except Exception:  # the connection is being given up; the original error matters
            pass
        raise


def main() -> int:
    from .targets import connect_kwargs
    from .settings import ConfigError, database_target_from

    try:
        target = database_target_from(os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    connection = pg8000.native.Connection(**connect_kwargs(target, 10))
    try:
        versions = apply_migrations(connection)
    finally:
        connection.close()
    print("applied: " + ", ".join(versions) if versions else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
