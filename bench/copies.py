"""The floor's copy: the Procfile's own `web:` command with only the source swapped, so
the floor and the function are served by the same gunicorn, flags and settings."""

from __future__ import annotations

import re

from devserver.copies import web_command

FLOOR_SOURCE = "bench/floor/main.py"


def floor_command() -> str:
    command, swapped = re.subn(r"--source=\S+", f"--source={FLOOR_SOURCE}", web_command())
    if swapped != 1:
        raise RuntimeError("the Procfile's web: line has no --source=... to swap for the floor")
    return command
