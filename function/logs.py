"""One JSON line per request on stdout: what a log pipeline can filter without parsing prose."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_logger = logging.getLogger("orders")


def configure(level: str) -> None:
    if _logger.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonLines())
    _logger.addHandler(handler)
    _logger.setLevel(level.upper())
    _logger.propagate = False


def request_line(**fields: Any) -> None:
    """route, method, status, profile, keyHash, outcome, durationMs, and the like."""
    _logger.info("request", extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def error(message: str, **fields: Any) -> None:
    _logger.error(message, exc_info=True, extra={"fields": fields})


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
