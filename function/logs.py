"""One JSON line per log record on stdout, in one shape for the function, gunicorn and
uvicorn alike: what a log pipeline can filter without parsing prose.

Standard `logging` throughout. The function logs through the "orders" logger; gunicorn is
handed `LOGGING` as its `logconfig_dict` (framework.py), and its uvicorn workers reuse
gunicorn's handlers, so every line of a copy leaves through the one `JsonFormatter`.

The request line is on every request's path, so the caller only builds a record and
enqueues it (`QueueHandler`); a `QueueListener` thread formats and writes. It wakes at
most every FLUSH_AFTER_SECONDS and writes what gathered in one write: a write and a flush
per request cost ~9 % of a replay. Each process (gunicorn's master and every worker it
forks) starts its own listener on its first line; the process's exit writes what is left.
"""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import os
import queue
import sys
import time
from typing import Any

FLUSH_AFTER_SECONDS = 0.02  # prompt for `kubectl logs`; under load hundreds of lines per write
MAX_PENDING_LINES = 256
LOGGER = "orders"
_log = logging.getLogger(LOGGER)

# Never used by the JSON shape, and each costs time on every record (the logging HOWTO's
# "Optimization" section): the calling frame, thread, process and task names.
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False


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
        """The seconds part is formatted once per second (called on the writer's thread only)."""
        second = int(created)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


class _Lines(logging.Handler):
    """On the listener's thread: formatted lines gathered, written together."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self._pending.append(self.format(record) + "\n")
        if len(self._pending) >= MAX_PENDING_LINES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            sys.stdout.write("".join(self._pending))
            self._pending.clear()
            sys.stdout.flush()


class _GatheringListener(logging.handlers.QueueListener):
    """Waits for a line, lets more gather for FLUSH_AFTER_SECONDS, then writes them all."""

    def __init__(self, lines: queue.SimpleQueue[Any], output: _Lines) -> None:
        super().__init__(lines, output)
        self._lines = lines
        self._output = output

    def dequeue(self, block: bool) -> Any:
        try:
            return self._lines.get_nowait()
        except queue.Empty:
            self._output.flush()  # nothing more came: write what gathered
            record = self._lines.get()
            time.sleep(FLUSH_AFTER_SECONDS)
            return record

    def stop(self) -> None:
        super().stop()
        self._output.flush()


class QueueToStdout(logging.handlers.QueueHandler):
    """The handler every logger of a copy writes through (LOGGING names it)."""

    def __init__(self) -> None:
        super().__init__(queue.SimpleQueue())
        self._listener: _GatheringListener | None = None
        self._pid = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted on the listener's thread, not the caller's

    def enqueue(self, record: logging.LogRecord) -> None:
        if self._pid != os.getpid():  # first line of this process (a forked worker too)
            self._pid = os.getpid()
            self.queue = queue.SimpleQueue()  # not the parent's: its listener is not here
            self._listener = _GatheringListener(self.queue, _Lines())
            self._listener.start()
        self.queue.put_nowait(record)

    def close(self) -> None:
        """At exit (logging.shutdown) and when gunicorn re-configures: write what is left."""
        if self._listener is not None and self._pid == os.getpid():
            self._listener.stop()
            self._listener = None
        super().close()


def logging_config(level: str) -> dict[str, Any]:
    """The one configuration: the function's own logger at `level`; gunicorn's error log
    (which uvicorn's workers share) at the level gunicorn is given; no access log, since the
    function writes its own request line."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {"json": {"()": QueueToStdout}},
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
