"""A cross-check with wrk (C, Debian package `wrk`), when installed: the floor measured by
a second generator. If both agree, the floor is the server's, not the generator's."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .traffic import order_body

# wrk sends one fixed request; the floor ignores the key, so a fixed one is fair here.
SCRIPT = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Profile-Id"] = "bench-floor"
wrk.headers["Idempotency-Key"] = "wrk"
"""
_UNITS_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_floor(url: str, connections: int, seconds: float) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "post.lua"
        script.write_text(SCRIPT.format(body=order_body().decode()))
        finished = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
             url + "/orders"],
            capture_output=True, text=True, timeout=seconds + 30,
        )
    text = finished.stdout
    throughput = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if finished.returncode != 0 or throughput is None:
        return {"skipped": f"wrk failed: {(finished.stderr or text).strip()[-300:]}"}
    latencies = {
        f"p{share}": round(float(value) * _UNITS_TO_MS[unit], 3)
        for share, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    }
    return {"connections": connections, "throughput": float(throughput.group(1)), **latencies}
