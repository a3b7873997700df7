"""The floor's copy: the Procfile's own `web:` command with only the source swapped, so
the floor and the function are served by the same gunicorn, flags and settings."""

from __future__ import annotations

import re
import subprocess

from devserver.copies import PROJECT_ROOT, FunctionCopy, web_command

FLOOR_SOURCE = "bench/floor/main.py"


def floor_command() -> str:
    command, swapped = re.subn(r"--source=\S+", f"--source={FLOOR_SOURCE}", web_command())
    if swapped != 1:
        raise RuntimeError("the Procfile's web: line has no --source=... to swap for the floor")
    return command


class FloorCopy(FunctionCopy):
    """A FunctionCopy serving bench/floor/main.py instead of the orders function."""

    def start(self, *, wait: bool = True) -> FloorCopy:
        output = open(self._log, "ab") if self._log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + floor_command()], cwd=PROJECT_ROOT, env=self._env,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self
