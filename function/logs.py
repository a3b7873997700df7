"""One JSON line per log record on stdout, in one shape for the function, gunicorn and
uvicorn alike: what a log pipeline can filter without parsing prose.

Standard `logging` throughout. The function logs through the "orders" logger; gunicorn is
handed `LOGGING` as its `logconfig_dict` (framework_patch.py), and its uvicorn workers reuse
gunicorn's handlers, so every line of a copy leaves through the one `JsonFormatter`.

The request line is on every request's path. A write and a flush per request cost a
visible share of a replay, so on the event loop records are gathered for up to
FLUSH_AFTER_SECONDS and written together. Not on a QueueListener thread: formatting
there cost more CPU per line than on the loop, since one GIL serves both threads
(figures for both: docs/bench.md, "Figures behind choices in the code").
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import sys
import time
from typing import Any

FLUSH_AFTER_SECONDS = 0.02  # prompt for `kubectl logs`; under load hundreds of lines per write
MAX_PENDING_LINES = 256
LOGGER = "orders"
_log = logging.getLogger(LOGGER)
_root = logging.getLogger()


class JsonFormatter(logging.Formatter):
    """time (RFC 3339, UTC, milliseconds), level, message, then the record's `fields`."""

    _encode = json.JSONEncoder(separators=(",", ":"), default=str).encode

    def __init__(self) -> None:
        super().__init__()
        self._second, self._prefix = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.timestamp(record.created), "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if record.name != LOGGER:  # gunicorn.error, uvicorn.error, ...: say who spoke
            line["logger"] = record.name
        for name, value in getattr(record, "fields", {}).items():
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return self._encode(line)

    def request_line(self, fields: dict[str, Any]) -> str:
        """The line `format` makes of an info record "request" with these fields."""
        line: dict[str, Any] = {"time": self.timestamp(time.time()), "level": "info", "message": "request"}
        for name, value in fields.items():
            if value is not None:
                line[name] = value
        return self._encode(line)

    def timestamp(self, created: float) -> str:
        """The seconds part is formatted once per second (called holding the handler's lock)."""
        second = int(created)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


class GatheredStdout(logging.Handler):
    """The handler every logger of a copy writes through (LOGGING names it). On the event
    loop, records are gathered for at most FLUSH_AFTER_SECONDS, then formatted and written
    in one write; an error, a full batch, a line from outside the loop (start-up, the
    master) and the process's exit (logging.shutdown) write at once."""

    def __init__(self) -> None:
        super().__init__()
        self.json = JsonFormatter()
        self.setFormatter(self.json)
        self._pending: list[str] = []  # lines, each ending in a newline

    def emit(self, record: logging.LogRecord) -> None:  # called holding self.lock
        self._gather(self.format(record) + "\n", at_once=record.levelno >= logging.ERROR)

    def request_line(self, fields: dict[str, Any]) -> None:
        """The request line without a LogRecord: the same line `emit` writes for one,
        at about half the CPU (a LogRecord alone is ~5 us, and every request makes one)."""
        with self.lock:  # type: ignore[union-attr]
            self._gather(self.json.request_line(fields) + "\n", at_once=False)

    def _gather(self, line: str, *, at_once: bool) -> None:
        self._pending.append(line)
        if at_once or len(self._pending) >= MAX_PENDING_LINES:
            self._write()
        elif len(self._pending) == 1:  # the first since the last write schedules the next
            try:
                asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, self.flush)
            except RuntimeError:  # no loop on this thread
                self._write()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _write(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            sys.stdout.write(text)
            sys.stdout.flush()


def logging_config(level: str) -> dict[str, Any]:
    """The one configuration: the function's own logger at `level`; gunicorn's error log
    (which uvicorn's workers share) at the level gunicorn is given; no access log, since the
    function writes its own request line."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {"json": {"()": GatheredStdout}},
        "root": {"level": "WARNING", "handlers": ["json"]},
        "loggers": {
            LOGGER: {"level": level.upper(), "handlers": [], "propagate": True},
            # uvicorn's workers copy this logger's handler list and stop propagating, so
            # it needs the handler itself.
            "gunicorn.error": {"handlers": ["json"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


LOGGING: dict[str, Any] = logging_config("info")


def configure(level: str) -> None:
    global LOGGING
    # Never used by the JSON shape, and each costs time on every record (the logging
    # HOWTO's "Optimization" section): the calling frame, thread and process names.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    LOGGING = logging_config(level)
    logging.config.dictConfig(LOGGING)
    logging.captureWarnings(True)  # a library's warning is a JSON line too, not text on stderr


def request_line(fields: dict[str, Any]) -> None:
    """route, method, status, profile, keyHash, outcome, durationMs, and the like.
    Straight to the one handler when the configuration is ours (LOGGING), as it is in a
    copy; through `logging` when anything else listens (another handler, a filter)."""
    if not _log.isEnabledFor(logging.INFO):
        return
    handlers = _root.handlers
    if len(handlers) == 1 and type(handlers[0]) is GatheredStdout and not handlers[0].filters and not _log.handlers \
            and not _log.filters and _log.propagate:
        handlers[0].request_line(fields)
    else:
        _log.info("request", extra={"fields": fields})


def info(message: str, **fields: Any) -> None:
    _log.info(message, extra={"fields": fields})


def warning(message: str, **fields: Any) -> None:
    _log.warning(message, extra={"fields": fields})


def error(message: str, **fields: Any) -> None:
    """An unexpected failure, with its traceback (call it from an `except` block)."""
    _log.error(message, exc_info=True, extra={"fields": fields})
