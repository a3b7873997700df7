"""Many copies of the function started at once, as an autoscaler adds them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

from .copies import FunctionCopy


def start_together(
    env: Mapping[str, str], logs: Sequence[Path], *, timeout_seconds: float = 30.0,
) -> list[FunctionCopy]:
    """One copy per log file, all launched before any is waited for, so their start-ups
    overlap; then every one must answer within the one shared deadline. If one fails to
    start, the others are killed before the error is raised."""
    copies = [FunctionCopy(env, log=log).start(wait=False) for log in logs]
    deadline = time.monotonic() + timeout_seconds
    try:
        for copy in copies:
            copy.wait_ready(timeout_seconds=max(0.1, deadline - time.monotonic()))
    except BaseException:
        for copy in copies:
            copy.kill()
        raise
    return copies
