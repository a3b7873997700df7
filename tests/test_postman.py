"""The Postman collection users run against a Knative route, run here with newman."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devserver.copies import PROJECT_ROOT, FunctionCopy

COLLECTION = PROJECT_ROOT / "tests" / "postman" / "orders.postman_collection.json"
NODE_DIR = PROJECT_ROOT / ".local" / "node"  # newman is installed here, once


def newman() -> Path:
    binary = NODE_DIR / "node_modules" / ".bin" / "newman"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: the Postman collection needs newman from npm")
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--silent", "newman@6"],
            check=True, timeout=300,
        )
    return binary


def test_the_postman_collection_passes_against_a_running_copy(api_copy: FunctionCopy) -> None:
    run = subprocess.run(
        [str(newman()), "run", str(COLLECTION), "--env-var", f"baseUrl={api_copy.url}",
         "--reporters", "cli", "--bail", "--color", "off"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"assertions\s*│\s*7\s*│\s*0\s*│", run.stdout), run.stdout[-2000:]
