"""One JSON line per request on stdout: what a log pipeline can filter without parsing prose.

Written directly rather than through `logging`: the request line is on every request's
path, and the logging machinery cost several times the JSON encoding itself. Lines are
written whole, from the event loop's thread (and the start-up), so they never interleave.
On the loop, lines are gathered for at most FLUSH_AFTER_SECONDS and written together:
the bench showed a write (and a flush) per request costing ~9 % of a replay. An error
line, a full buffer, and the process's exit write at once.
"""

from __future__ import annotations

import asyncio
import atexit
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
_pending: list[str] = []
FLUSH_AFTER_SECONDS = 0.02  # prompt for `kubectl logs`; under load dozens of lines per write
MAX_PENDING_LINES = 256


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
    flush()  # whatever happens next, this line is out


def _write(level: str, message: str, fields: dict[str, Any]) -> None:
    line = {"time": _timestamp(), "level": level, "message": message}
    for name, value in fields.items():
        if value is not None:
            line[name] = value
    _pending.append(_encode(line) + "\n")
    if len(_pending) >= MAX_PENDING_LINES:
        flush()
    elif len(_pending) == 1:  # the first line since the last write schedules the next
        try:
            asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, flush)
        except RuntimeError:  # no loop (start-up): at once
            flush()


def flush() -> None:
    """Promptly, even where stdout is a pipe with a buffer."""
    if _pending:
        sys.stdout.write("".join(_pending))
        _pending.clear()
        sys.stdout.flush()


atexit.register(flush)


def _timestamp() -> str:
    """RFC 3339 UTC with milliseconds; the seconds part is formatted once per second."""
    global _stamped_second, _stamp_prefix
    now = time.time()
    second = int(now)
    if second != _stamped_second:
        _stamped_second, _stamp_prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_stamp_prefix}.{int((now - second) * 1000):03d}Z"
