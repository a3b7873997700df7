"""The floors' command lines: the Procfile's own `web:` command with the source swapped and
`--asgi` set or dropped, so each floor runs on the same flags and settings as the function."""

from __future__ import annotations

import re

from devserver.copies import web_command

FLOORS = {
    # name in the report -> (source, served on the ASGI stack?)
    "floorDefault": ("bench/floor/default_stack.py", False),
    "floorAsgi": ("bench/floor/asgi_stack.py", True),
    # parse, fingerprint, one EVALSHA, the stored bytes back: what a replay cannot skip
    "floorReplay": ("bench/floor/replay_stack.py", True),
}

# The function with group commit off (each create its own INSERT), beside the default.
UNBATCHED = {"DATABASE_BATCH_MAX": "1"}


def floor_command(name: str) -> str:
    source, asgi = FLOORS[name]
    command, swapped = re.subn(r"--source=\S+", f"--source={source}", web_command())
    if swapped != 1:
        raise RuntimeError("the Procfile's web: line has no --source=... to swap for the floor")
    command = re.sub(r"\s--asgi\b", "", command)
    if asgi:
        command = command.replace("functions-framework", "functions-framework --asgi", 1)
    return command


def is_asgi(command: str) -> bool:
    return re.search(r"\s--asgi\b", command) is not None
