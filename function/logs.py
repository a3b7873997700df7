"""One JSON line per request on stdout: what a log pipeline can filter without parsing prose.

Written directly rather than through `logging`: the request line is on every request's
path, and the logging machinery cost several times the JSON encoding itself.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_lock = threading.Lock()
_threshold = _LEVELS["info"]


def configure(level: str) -> None:
    global _threshold
    _threshold = _LEVELS[level]


def request_line(**fields: Any) -> None:
    """route, method, status, profile, keyHash, outcome, durationMs, and the like."""
    if _threshold <= _LEVELS["info"]:
        _write("info", "request", {k: v for k, v in fields.items() if v is not None})


def error(message: str, **fields: Any) -> None:
    """An unexpected failure, with its traceback (call it from an `except` block)."""
    _write("error", message, {**fields, "error": traceback.format_exc()})


def _write(level: str, message: str, fields: dict[str, Any]) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    line = json.dumps({"time": stamp, "level": level, "message": message, **fields}, default=str)
    with _lock:  # whole lines, promptly, even where stdout is a pipe with a buffer
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
