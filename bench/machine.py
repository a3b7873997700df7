"""What the figures were measured on: they mean little without the machine and its load."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

import redis

from devserver.stack import Connection

SERVING_PACKAGES = ("functions-framework", "gunicorn", "uvicorn", "httptools", "uvloop", "starlette", "flask")


def describe(database_url: str, redis_url: str) -> dict[str, Any]:
    with Connection(database_url) as connection:
        postgres = connection.native.run("SHOW server_version")[0][0]
        fsync = connection.native.run("SHOW fsync")[0][0]
        synchronous_commit = connection.native.run("SHOW synchronous_commit")[0][0]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),  # what `uname -m` prints
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "loadAverageAtStart": [round(value, 2) for value in os.getloadavg()],
        "postgres": f"{postgres} (fsync={fsync}, synchronous_commit={synchronous_commit})",
        "redis": _redis_version(redis_url),
        # uvicorn picks httptools and uvloop only when installed: "not installed" explains a slow ASGI floor.
        "serving": {name: _version(name) for name in SERVING_PACKAGES},
        "interpreter": sys.executable,
    }


def _redis_version(redis_url: str) -> str:
    # redis-py types a sync client's answers as "Awaitable | Any": it is the Any here.
    info = cast(dict[str, Any], redis.Redis.from_url(redis_url).info("server"))
    return str(info["redis_version"])


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"
