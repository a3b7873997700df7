"""What a copy's log says when it answered a 500 or crashed on a request.

The function logs every unhandled error at level error whatever LOG_LEVEL is, and the
servers under it (functions-framework's middleware, uvicorn, gunicorn) log theirs to the
same output; each copy in the tests writes its own log file.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKERS = re.compile(
    r'"message":"unhandled error"'        # the function's own catch-all (answered 500)
    r"|Exception on /"                    # functions-framework's ASGI middleware (500)
    r"|Exception in ASGI application"     # uvicorn (500, or a dropped connection)
    r"|Worker \(pid:\d+\) was sent SIG"   # gunicorn: a worker crashed or hung
    r"|WORKER TIMEOUT"
)


def server_errors(text: str) -> list[str]:
    """The lines of a log that show a 500 or a crash."""
    return [line[:300] for line in text.splitlines() if MARKERS.search(line)]


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
