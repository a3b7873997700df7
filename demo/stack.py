"""A throw-away local stack: embedded PostgreSQL and Redis in a temp dir, the schema, and
N copies of the function started from the Procfile, a stand-in for N autoscaled pods.

Used by `python -m demo --spawn N` and by the benchmark suite; everything it started is
stopped, and its temp dir removed, when the `with` block ends.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Mapping

import pg8000.native

from devserver.copies import FunctionCopy
from devserver.servers import PostgresServer, RedisServer
from function.database import connect_kwargs
from function.targets import parse_database_url
from function.migrate import apply_migrations


class LocalStack:
    """PostgreSQL, Redis and `copies` function copies, all on free local ports.

    `database_url` / `redis_url` reuse servers that already run (`make run`'s, a test
    session's) instead of starting new ones; only what this stack started is stopped.
    """

    def __init__(
        self,
        copies: int,
        *,
        env: Mapping[str, str] | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        durable_postgres: bool = False,
    ) -> None:
        self.copy_count = copies
        self.extra_env = dict(env or {})
        self.database_url = database_url or ""
        self.redis_url = redis_url or ""
        self.durable_postgres = durable_postgres
        self.copies: list[FunctionCopy] = []
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        # Not under a 0700 temp root: PostgreSQL may run as another user (servers.py).
        self.workdir = Path(tempfile.mkdtemp(prefix="orders-stack-"))

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def urls(self) -> list[str]:
        return [copy.url for copy in self.copies]

    @property
    def copy_env(self) -> dict[str, str]:
        """What every copy is started with (the bench adds WORKERS, THREADS, ...)."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "LOG_LEVEL": "warning",
            **self.extra_env,
        }

    def start(self) -> None:
        if not self.database_url:
            self.postgres = PostgresServer(self.workdir / "postgres", durable=self.durable_postgres).start()
            self.database_url = self.postgres.url
        if not self.redis_url:
            self.redis = RedisServer(self.workdir / "redis").start()
            self.redis_url = self.redis.url
        with self.connect() as connection:
            apply_migrations(connection.native)
        # All copies boot at once, as pods of a scale-up do; then each must answer.
        started = [self.start_copy(wait=False) for _ in range(self.copy_count)]
        for copy in started:
            copy.wait_ready()

    def start_copy(
        self, env: Mapping[str, str] | None = None, *, wait: bool = True,
        command: str | None = None,
    ) -> FunctionCopy:
        """One more copy (stopped with the stack); its output goes to a log in workdir.
        `command` may serve something else than the Procfile's (the bench's floor)."""
        log = self.workdir / f"copy-{len(self.copies)}.log"
        copy = FunctionCopy({**self.copy_env, **(env or {})}, log=log, command=command)
        self.copies.append(copy)
        return copy.start(wait=wait)

    def connect(self) -> Connection:
        return Connection(self.database_url)

    def stop(self) -> None:
        for copy in self.copies:
            copy.stop(timeout_seconds=10)
        self.copies.clear()
        for server in (self.redis, self.postgres):
            if server is not None:
                server.stop()
        self.redis = self.postgres = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class Connection:
    """A pg8000 connection to the stack's database, closed by `with`."""

    def __init__(self, url: str) -> None:
        self.native = pg8000.native.Connection(**connect_kwargs(parse_database_url(url), 10))

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.native.close()
