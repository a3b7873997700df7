"""One JSON line per request on stdout: what a log pipeline can filter without parsing prose.

Written directly rather than through `logging`: the request line is on every request's
path, and the logging machinery cost several times the JSON encoding itself. Lines are
written whole, from the event loop's thread (and the start-up), so they never interleave.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_threshold = _LEVELS["info"]
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_stamped_second = -1
_stamp_prefix = ""


def configure(level: str) -> None:
    global _threshold
    _threshold = _LEVELS[level]


def request_line(fields: dict[str, Any]) -> None:
    """route, method, status, profile, keyHash, outcome, durationMs, and the like."""
    if _threshold <= 20:
        _write("info", "request", fields)


def info(message: str, **fields: Any) -> None:
    if _threshold <= 20:
        _write("info", message, fields)


def warning(message: str, **fields: Any) -> None:
    if _threshold <= 30:
        _write("warning", message, fields)


def error(message: str, **fields: Any) -> None:
    """An unexpected failure, with its traceback (call it from an `except` block)."""
    _write("error", message, {**fields, "error": traceback.format_exc()})


def _write(level: str, message: str, fields: dict[str, Any]) -> None:
    line = {"time": _timestamp(), "level": level, "message": message}
    for name, value in fields.items():
        if value is not None:
            line[name] = value
    sys.stdout.write(_encode(line) + "\n")
    sys.stdout.flush()  # promptly, even where stdout is a pipe with a buffer


def _timestamp() -> str:
    """RFC 3339 UTC with milliseconds; the seconds part is formatted once per second."""
    global _stamped_second, _stamp_prefix
    now = time.time()
    second = int(now)
    if second != _stamped_second:
        _stamped_second, _stamp_prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_stamp_prefix}.{int((now - second) * 1000):03d}Z"
