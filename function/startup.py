"""What a copy does once before it serves, in one call (`start`): read the settings,
share the metrics between workers, apply the schema, and hand over the request handler.

The schema is applied here, in the process functions-framework starts, before gunicorn
forks its workers: outside request time and every request timeout, on a connection of
its own that is closed before the fork. Many copies starting at once are safe: the
migration takes a transaction-level advisory lock (migrate.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Mapping

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from . import logs, migrate
from .settings import ConfigError, Settings
from .targets import connect_kwargs

def start(env: Mapping[str, str]) -> tuple[Settings, Callable[[Any], object]]:
    """The copy's start-up, in order, in the process functions-framework starts (before
    gunicorn forks its workers); returns the settings and `handle`."""
    settings = settings_or_exit(dict(env))
    directory = share_metrics_between_workers(settings)
    # Imported only now: metrics.py imports prometheus_client, which reads
    # PROMETHEUS_MULTIPROC_DIR once, when first imported.
    from . import dispatch, framework_patch, metrics, worker

    metrics.share_between_workers(directory)
    logs.configure(settings.log_level)
    schema_applied = apply_schema(settings)
    framework_patch.answer_framework_errors_as_problems(lifespan=worker.worker_lifespan(settings, schema_applied))
    framework_patch.serve_with_our_server_settings()
    return settings, dispatch.serving(settings, schema_applied=schema_applied)


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


def apply_schema(settings: Settings) -> bool:
    """Whether the schema is now up to date; False when AUTO_MIGRATE is off or
    PostgreSQL did not answer (each worker then applies it before its first query)."""
    if not settings.auto_migrate:
        return False
    try:
        connection = pg8000.native.Connection(**connect_kwargs(settings.database, settings.database_connect_timeout_seconds))
    except (InterfaceError, OSError, DatabaseError) as exc:
        logs.warning("schema not checked at start-up: PostgreSQL did not answer; "
                     "each worker applies it before its first query", error=type(exc).__name__)
        return False
    try:
        applied = migrate.apply_migrations(connection, settings.migration_timeout_seconds)
    finally:
        connection.close()
    logs.info("schema up to date", applied=applied or None)
    return True
