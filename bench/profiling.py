"""Where a copy's CPU goes under load: py-spy samples the running copy from outside
(nothing in the function changes) while a scenario runs, and the samples are summed by
package and by function.

Only samples holding the GIL are kept (`--gil`): with one worker process the GIL is the
resource every request queues for, so its holders are what bound throughput.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLE_RATE_HZ = 250
# Where a frame's file lives says which layer spent the time; first match wins.
OWN_LAYER = "function/ (the orders code)"
LAYERS = (
    ("function/", OWN_LAYER),
    ("bench/floor/", "bench/floor (the constant)"),
    ("redis/", "redis-py"),
    ("pg8000/", "pg8000"),
    ("scramp/", "pg8000"),
    ("prometheus_client/", "prometheus_client"),
    ("logging/", "logging"),
    ("json/", "json"),
    ("starlette/", "Starlette"),
    ("uvicorn/", "uvicorn + httptools"),
    ("uvloop/", "uvloop"),
    ("functions_framework/", "functions-framework"),
    ("gunicorn/", "gunicorn"),
    ("asyncio/", "asyncio"),
    ("socket.py", "sockets"),
    ("threading.py", "threads, queues, locks"),
    ("queue.py", "threads, queues, locks"),
    ("concurrent/", "threads, queues, locks"),
)


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def profile_while(pid: int, load: Callable[[], Any], seconds: float) -> dict[str, Any]:
    """Sample process `pid` and its workers while `load()` runs (for about `seconds`)."""
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install -r demo/requirements.txt)"}
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "samples.txt"
        sampler = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking",
             "--rate", str(SAMPLE_RATE_HZ), "--duration", str(int(seconds) + 1),
             "--format", "raw", "--output", str(raw)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        load()
        output = sampler.communicate(timeout=seconds + 30)[0].decode(errors="replace")
        if sampler.returncode != 0 or not raw.exists():
            return {"skipped": f"py-spy failed: {output.strip()[-300:]}"}
        return summarise(raw.read_text())


def summarise(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Self time by layer and by function, and inclusive time by layer, in % of samples."""
    self_by_layer: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    inclusive_by_layer: Counter[str] = Counter()
    inclusive_by_own_function: Counter[str] = Counter()  # functions in function/ only
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_by_layer[_layer(leaf)] += count
        self_by_function[_short(leaf)] += count
        for layer in {_layer(frame) for frame in frames}:
            inclusive_by_layer[layer] += count
        for own in {_short(frame) for frame in frames if _layer(frame) == OWN_LAYER}:
            inclusive_by_own_function[own] += count

    def shares(counter: Counter[str], limit: int | None = None) -> dict[str, float]:
        return {name: round(100 * n / total, 1) for name, n in counter.most_common(limit)} if total else {}

    return {
        "samples": total,
        "selfPercentByLayer": shares(self_by_layer),
        "inclusivePercentByLayer": shares(inclusive_by_layer),
        "selfPercentByFunction": shares(self_by_function, top),
        "inclusivePercentByOwnFunction": shares(inclusive_by_own_function, top),
    }


def _layer(frame: str) -> str:
    location = frame[frame.rfind("(") + 1:]
    for marker, layer in LAYERS:
        if marker in location:
            return layer
    return "other stdlib / C"


def _short(frame: str) -> str:
    """`name (path/to/file.py:12)` -> `name (to/file.py)`: enough to find it, no line."""
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})"
