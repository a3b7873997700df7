"""Copies of the function, each started from the Procfile's `web:` line, as a buildpack,
the Dockerfile and Knative start it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

import requests

from .servers import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def web_command(procfile: Path = PROJECT_ROOT / "Procfile") -> str:
    for line in procfile.read_text().splitlines():
        if line.startswith("web:"):
            return line[len("web:"):].strip()
    raise RuntimeError(f"{procfile} has no web: line")


class FunctionCopy:
    """One copy of the function on its own port; `command` defaults to the Procfile's.
    Its output goes to `log`, or to our own stdout (the terminal of `make run`)."""

    def __init__(
        self, env: Mapping[str, str], *, port: int | None = None, log: Path | None = None,
        command: str | None = None,
    ):
        self.command = command or web_command()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **env, "PORT": str(self.port)}
        # The venv's console scripts (functions-framework) must be found like on a PATH.
        self._env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self._env.get('PATH', '')}"
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path | None:
        """Where its output (the JSON log lines among it) goes; None for our stdout."""
        return self._log

    def start(self, *, wait: bool = True) -> FunctionCopy:
        output = open(self._log, "ab") if self._log else None
        try:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", "exec " + self.command], cwd=PROJECT_ROOT, env=self._env,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()  # the child holds its own descriptor
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_seconds: float = 30.0) -> None:
        """Until /healthz answers at all (200 or 503: the process serves)."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the function exited with {self.process.returncode}; see {self._log}")
            try:
                requests.get(self.url + "/healthz", timeout=5)
                return
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def stop(self, timeout_seconds: float = 30.0) -> int | None:
        """SIGTERM, as Knative sends: gunicorn finishes what is in flight, then exits."""
        self.signal(signal.SIGTERM)
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to finish or release anything."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
