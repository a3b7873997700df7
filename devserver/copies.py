"""Copies of the function, each started from the Procfile's `web:` line, as a buildpack,
the Dockerfile and Knative start it. The one place a copy is started and awaited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Mapping

import requests

from .interrupts import signals_held
from .servers import free_port
from .waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 30.0
# functions-framework listens on HOST (its --host option reads it), 0.0.0.0 by default.
# Copies started here listen on loopback: in the gateway mode a copy trusts X-Profile-Id.
LOOPBACK = "127.0.0.1"


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
        command: str | None = None, host: str = LOOPBACK,
    ):
        self.command = command or web_command()
        self.port = port or free_port()
        self.host = host
        self.url = f"http://{LOOPBACK if host in ('0.0.0.0', '::', '') else host}:{self.port}"
        self._env = {**os.environ, **env, "PORT": str(self.port), "HOST": host}
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
            with signals_held():
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

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        """Does /healthz answer at all (200 or 503: the process serves)?"""
        try:
            requests.get(self.url + "/healthz", timeout=5)
            return True
        except requests.RequestException:
            return False

    def wait_ready(self, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        wait_until(self.answers, what=f"the function on port {self.port}", timeout_seconds=timeout_seconds,
                   still_running=lambda: self.running, log=self.log or "its output above")

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            os.killpg(self.process.pid, signum)

    def stop(self, timeout_seconds: float = 30.0) -> int | None:
        """SIGTERM, as Knative sends: the server finishes what is in flight, then exits."""
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


def wait_all_ready(copies: Sequence[FunctionCopy], *, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
    """Copies launched together (their start-ups overlap, as pods of a scale-up do) must
    all answer within one shared deadline; if one does not, all are killed first."""
    deadline = time.monotonic() + timeout_seconds
    try:
        for copy in copies:
            copy.wait_ready(timeout_seconds=max(0.1, deadline - time.monotonic()))
    except BaseException:
        for copy in copies:
            copy.kill()
        raise


def start_together(
    env: Mapping[str, str], logs: Sequence[Path], *, timeout_seconds: float = READY_TIMEOUT_SECONDS,
) -> list[FunctionCopy]:
    """One copy per log file, all launched before any is waited for."""
    copies = [FunctionCopy(env, log=log).start(wait=False) for log in logs]
    wait_all_ready(copies, timeout_seconds=timeout_seconds)
    return copies
