"""One JSON line per log record on stdout, in one shape for the function, gunicorn and
uvicorn alike: what a log pipeline can filter without parsing prose.

Standard `logging` throughout. The function logs through the "orders" logger; gunicorn is
handed `LOGGING` as its `logconfig_dict` (framework.py), and its uvicorn workers reuse
gunicorn's handlers, so every line of a copy leaves through the one `JsonFormatter`.

The request line is on every request's path. A write and a flush per request cost ~9 %
of a replay, so on the event loop records are gathered for up to FLUSH_AFTER_SECONDS and
written together. Not on a QueueListener thread: measured, formatting there cost more
CPU per line than on the loop (~38 against ~30 us here, with four times the context
switches), since one GIL serves both threads.
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


class JsonFormatter(logging.Formatter):
    """time (RFC 3339, UTC, milliseconds), level, message, then the record's `fields`."""

    _encode = json.JSONEncoder(separators=(",", ":"), default=str).encode

    def __init__(self) -> None:
        super().__init__()
        self._second, self._prefix = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._timestamp(record.created), "level": record.levelname.lower(),
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

    def _timestamp(self, created: float) -> str:
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
        self.setFormatter(JsonFormatter())
        self._pending: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:  # called holding self.lock
        self._pending.append(record)
        if len(self._pending) >= MAX_PENDING_LINES or record.levelno >= logging.ERROR:
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
            text = "".join([self.format(record) + "\n" for record in self._pending])
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
    """route, method, status, profile, keyHash, outcome, durationMs, and the like."""
    if _log.isEnabledFor(logging.INFO):
        _log.info("request", extra={"fields": fields})


def info(message: str, **fields: Any) -> None:
    _log.info(message, extra={"fields": fields})


def warning(message: str, **fields: Any) -> None:
    _log.warning(message, extra={"fields": fields})


def error(message: str, **fields: Any) -> None:
    """An unexpected failure, with its traceback (call it from an `except` block)."""
    _log.error(message, exc_info=True, extra={"fields": fields})
