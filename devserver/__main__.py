"""`python -m devserver`: what `make run` does.

Starts PostgreSQL and Redis under .local/ (unless DATABASE_URL / REDIS_URL point at real
servers), applies the schema, serves the function from the Procfile on PORT (8080), and
stops everything it started on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pg8000.native

from function.database import connect_kwargs
from function.targets import parse_database_url
from function.migrate import apply_migrations

from .copies import PROJECT_ROOT, FunctionCopy
from .servers import PostgresServer, RedisServer

# ORDERS_STATE_DIR moves it (the tests do, to leave a developer's data alone).
STATE_DIR = Path(os.environ.get("ORDERS_STATE_DIR", PROJECT_ROOT / ".local"))


def main() -> int:
    # Ctrl-C and SIGTERM both unwind the ExitStack, stopping everything started so far;
    # SIGINT is set explicitly because a shell starting us in the background ignores it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    env = dict(os.environ)
    port = int(env.get("PORT", "8080"))
    with ExitStack() as started:
        if not env.get("DATABASE_URL"):
            postgres = PostgresServer(STATE_DIR / "postgres", durable=True).start()
            started.callback(postgres.stop)
            env["DATABASE_URL"] = postgres.url
            print(f"PostgreSQL: {postgres.url} (data in {STATE_DIR / 'postgres'})")
        if not env.get("REDIS_URL"):
            redis = RedisServer(STATE_DIR / "redis", durable=True).start()
            started.callback(redis.stop)
            env["REDIS_URL"] = redis.url
            print(f"Redis:      {redis.url} (data in {STATE_DIR / 'redis'})")
        connection = pg8000.native.Connection(**connect_kwargs(parse_database_url(env["DATABASE_URL"]), 10))
        try:
            applied = apply_migrations(connection)
        finally:
            connection.close()
        print("Schema:     " + (", ".join(applied) + " applied" if applied else "up to date"))
        copy = FunctionCopy(env, port=port).start(wait=False)
        started.callback(copy.stop)
        copy.wait_ready()
        print(_welcome(copy.url), flush=True)
        try:
            while copy.process is not None and copy.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping the function, Redis and PostgreSQL ...")
    return 0


def _welcome(url: str) -> str:
    return f"""
The orders function is serving on {url}  (Ctrl-C stops everything)

  curl -i -X POST {url}/orders \\
    -H 'Content-Type: application/json' \\
    -H 'X-Profile-Id: alice' \\
    -H "Idempotency-Key: $(uuidgen 2>/dev/null || date +%s%N)" \\
    -d '{{"productId": "sku-42", "productQuantity": 2}}'

  curl -s '{url}/orders?profileId=alice'
  curl -s {url}/healthz
"""


if __name__ == "__main__":
    sys.exit(main())
