"""What a copy does once before it serves: read the settings, apply the schema, and say
which event loop and HTTP parser uvicorn picked.

The schema is applied here, in the process functions-framework starts, before gunicorn
forks its workers: outside request time and every request timeout, on a connection of
its own that is closed before the fork. Many copies starting at once are safe: the
migration takes a transaction-level advisory lock (migrate.py).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import sys
import tempfile

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from . import logs, migrate
from .settings import ConfigError, Settings
from .targets import connect_kwargs

_schema_checked = False


def settings_or_exit(env: dict[str, str]) -> Settings:
    """One line naming the variable, no traceback, and a non-zero exit."""
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        print(f"orders function: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def share_metrics_between_workers(settings: Settings) -> str | None:
    """The directory where gunicorn's workers keep their metric values, or None for one
    worker. Must run before prometheus_client is first imported: it picks single- or
    multi-process values then, from PROMETHEUS_MULTIPROC_DIR (so this module imports
    nothing that imports metrics). Run in gunicorn's master, before the fork, so every
    worker inherits the same directory; a fresh one per start, as the client requires,
    removed when the master exits."""
    if settings.metrics_directory is not None:
        return settings.metrics_directory  # the operator's (already in the environment)
    if settings.workers <= 1:
        return None
    directory = tempfile.mkdtemp(prefix="orders-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # for prometheus_client, which reads only this
    master = os.getpid()

    def remove() -> None:  # workers run atexit too: only the master's exit removes it
        if os.getpid() == master:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return directory


def apply_schema(settings: Settings) -> None:
    global _schema_checked
    if not settings.auto_migrate:
        return
    try:
        connection = pg8000.native.Connection(**connect_kwargs(settings.database, settings.database_connect_timeout_seconds))
    except (InterfaceError, OSError, DatabaseError) as exc:
        logs.warning("schema not checked at start-up: PostgreSQL did not answer; "
                     "each worker applies it before its first query", error=type(exc).__name__)
        return
    try:
        applied = migrate.apply_migrations(connection, settings.migration_timeout_seconds)
    finally:
        connection.close()
    _schema_checked = True
    logs.info("schema up to date", applied=applied or None)


def schema_checked() -> bool:
    return _schema_checked


def report_serving_stack() -> None:
    """uvicorn uses uvloop and httptools only when they import; without them a copy
    serves at a fraction of the speed, so say which were picked (once per worker)."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    parser = "httptools" if "uvicorn.protocols.http.httptools_impl" in sys.modules else "h11"
    fields = {"eventLoop": "uvloop" if loop == "uvloop" else "asyncio", "httpParser": parser}
    if fields == {"eventLoop": "uvloop", "httpParser": "httptools"}:
        logs.info("serving", **fields)
    else:
        logs.warning("serving on the slow stack: install uvloop and httptools", **fields)
