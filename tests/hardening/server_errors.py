"""What a copy's log says when it answered a 500 or crashed on a request.

Every line a copy writes is one JSON object in one shape (function/logs.py): the
function's own lines and those of gunicorn and uvicorn under it. The function logs every
unhandled error at level error whatever LOG_LEVEL is; uvicorn ("Exception in ASGI
application") and gunicorn (a worker that crashed, hung or was killed) log theirs at
error or critical. A line that is not JSON was written around the logging (a crash's
bare traceback) and counts too. Each copy in the tests writes its own log file.
"""

from __future__ import annotations

import json
from pathlib import Path

FAILURE_LEVELS = frozenset({"error", "critical"})


def server_errors(text: str) -> list[str]:
    """The lines of a log that show a 500, a crash, or output no logger wrote."""
    return [line[:300] for line in text.splitlines() if line.strip() and not _is_routine(line)]


def _is_routine(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("level") not in FAILURE_LEVELS


class LogWatch:
    """Remembers how far each copy's log had been read, so each test module is judged by
    what its own requests caused."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read: dict[Path, int] = {}

    def mark(self) -> None:
        self._read = {path: path.stat().st_size for path in self.folder.glob("*copy*.log")}

    def new_errors(self) -> dict[str, list[str]]:
        found = {}
        for path in sorted(self.folder.glob("*copy*.log")):
            with open(path, "rb") as log:
                log.seek(self._read.get(path, 0))
                errors = server_errors(log.read().decode("utf-8", "replace"))
            if errors:
                found[path.name] = errors
        return found
