"""The one wait-until-ready loop: servers, function copies, the bench's constant server.

A start that fails is noticed at once (the process exited) rather than after the whole
timeout, and the message names what was awaited and where its log is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

POLL_SECONDS = 0.02


class NotReady(RuntimeError):
    """What was awaited never answered, or its process ended first."""


def wait_until(
    answers: Callable[[], bool], *, what: str, timeout_seconds: float,
    still_running: Callable[[], bool] = lambda: True, log: object = None, poll_seconds: float = POLL_SECONDS,
) -> None:
    """Until `answers()` is true; fails early once `still_running()` is false."""
    deadline = time.monotonic() + timeout_seconds
    where = f"; see {log}" if log else ""
    while not answers():
        if not still_running():
            raise NotReady(f"{what} exited before it answered{where}")
        if time.monotonic() > deadline:
            raise NotReady(f"{what} did not answer within {timeout_seconds:.0f} s{where}")
        time.sleep(poll_seconds)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
