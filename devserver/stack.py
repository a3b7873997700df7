"""The one stack starter: PostgreSQL and Redis (embedded, or the URLs given), the schema,
and copies of the function started from the Procfile.

`make run` keeps its stack under .local/ and serves one copy on PORT; the demo, the
benchmark, the soak and the tests throw theirs away (a temp dir, removed at the end).
Only what a stack started is stopped.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Mapping

import pg8000.native

from function.targets import connect_kwargs, parse_database_url
from function.migrate import apply_migrations

from .copies import LOOPBACK, FunctionCopy, wait_all_ready
from .servers import PostgresServer, RedisServer

_OWN_LOG = Path("copy.log")  # default for start_copy: a log of its own in the workdir


class LocalStack:
    """PostgreSQL, Redis and `copies` function copies, all on local ports.

    `database_url` / `redis_url` reuse servers that already run instead of starting new
    ones. `workdir` keeps the servers' data there (and keeps it afterwards); without it a
    temp dir is used and removed.
    """

    def __init__(
        self,
        copies: int = 0,
        *,
        env: Mapping[str, str] | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        durable: bool = False,
        workdir: Path | None = None,
    ) -> None:
        self.copy_count = copies
        self.extra_env = dict(env or {})
        self.database_url = database_url or ""
        self.redis_url = redis_url or ""
        self.durable = durable
        self.copies: list[FunctionCopy] = []
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.keeps_workdir = workdir is not None
        # Not under a 0700 temp root: PostgreSQL may run as another user (servers.py).
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="orders-stack-"))

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
        self.start_storage()
        wait_all_ready([self.start_copy(wait=False) for _ in range(self.copy_count)])

    def start_storage(self) -> list[str]:
        """The servers not given by URL, and the schema; returns the migrations applied."""
        # Each server is ours to stop from before it starts: an interrupt while it comes
        # up (Ctrl-C in `make run`) must not leave it running.
        if not self.database_url:
            self.postgres = PostgresServer(self.workdir / "postgres", durable=self.durable)
            self.database_url = self.postgres.start().url
        if not self.redis_url:
            self.redis = RedisServer(self.workdir / "redis", durable=self.durable)
            self.redis_url = self.redis.start().url
        with self.connect() as connection:
            return apply_migrations(connection.native)

    def start_copy(
        self, env: Mapping[str, str] | None = None, *, wait: bool = True, command: str | None = None,
        port: int | None = None, log: Path | None = _OWN_LOG, host: str = LOOPBACK,
    ) -> FunctionCopy:
        """One more copy (stopped with the stack). Its output goes to a log of its own in
        the workdir, or with `log=None` to our stdout. `command` may serve something else
        than the Procfile's (the bench's floors)."""
        if log is _OWN_LOG:
            log = self.workdir / f"copy-{len(self.copies)}.log"
        copy = FunctionCopy({**self.copy_env, **(env or {})}, log=log, command=command, port=port, host=host)
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
        if not self.keeps_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class Connection:
    """A pg8000 connection to the stack's database, closed by `with`."""

    def __init__(self, url: str) -> None:
        self.native = pg8000.native.Connection(**connect_kwargs(parse_database_url(url), 10))

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.native.close()
