"""`python -m devserver`: what `make run` does.

Starts PostgreSQL and Redis under .local/ (unless DATABASE_URL / REDIS_URL point at real
servers), applies the schema, serves the function from the Procfile on PORT (8080) and
HOST (127.0.0.1: loopback unless asked otherwise), and stops what it started on Ctrl-C.
Whatever goes wrong before the function serves is one line naming the cause, no traceback.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
import time
from pathlib import Path

from .copies import LOOPBACK, PROJECT_ROOT
from .servers import port_is_free
from .stack import LocalStack
from .waiting import NotReady, process_alive

# ORDERS_STATE_DIR moves it (the tests do, to leave a developer's data alone).
STATE_DIR = Path(os.environ.get("ORDERS_STATE_DIR", PROJECT_ROOT / ".local"))
PID_FILE = "make-run.pid"


class CannotStart(Exception):
    """A reason `make run` stops before serving, said in one line."""


class _StopAsked:
    """Ctrl-C or SIGTERM: raise KeyboardInterrupt wherever the program is, and remember
    it. Python swallows an exception raised while a finaliser (`__del__`) runs, so a
    Ctrl-C landing in the garbage collector would be lost: the serving loop asks again."""

    asked = False

    def __call__(self, signum: int, frame: object) -> None:
        self.asked = True
        raise KeyboardInterrupt


STOP = _StopAsked()


def main() -> int:
    # Ctrl-C and SIGTERM both end the run and stop everything started so far; SIGINT is
    # set explicitly because a shell starting us in the background ignores it.
    signal.signal(signal.SIGINT, STOP)
    signal.signal(signal.SIGTERM, STOP)
    try:
        host, port = listen_address(os.environ)
        claim_state_dir(STATE_DIR)
    except CannotStart as reason:
        print(f"make run: {reason}", file=sys.stderr)
        return 1
    stack = LocalStack(
        database_url=os.environ.get("DATABASE_URL"), redis_url=os.environ.get("REDIS_URL"),
        durable=True, workdir=STATE_DIR, env={"LOG_LEVEL": os.environ.get("LOG_LEVEL", "info")},
    )
    try:
        return _serve(stack, host, port)
    except KeyboardInterrupt:
        # Caught here, not around the serving loop alone: a Ctrl-C may land anywhere,
        # even inside the print of the welcome text, and must still say what it stops.
        stopping = what_ctrl_c_stops(stack)
        print(f"\nstopping {stopping} ..." if stopping else "\nstopping ...", flush=True)
        return 0
    finally:
        stack.stop()
        (STATE_DIR / PID_FILE).unlink(missing_ok=True)


def _serve(stack: LocalStack, host: str, port: int) -> int:
    try:
        applied = stack.start_storage()
    except NotReady as failure:
        print(f"make run: {failure}", file=sys.stderr)
        return 1
    if stack.postgres:
        print(f"PostgreSQL: {stack.postgres.url} (data in {stack.postgres.workdir})")
    if stack.redis:
        print(f"Redis:      {stack.redis.url} (data in {stack.redis.workdir})")
    print("Schema:     " + (", ".join(applied) + " applied" if applied else "up to date"))
    copy = stack.start_copy(wait=False, port=port, log=None, host=host)
    try:
        copy.wait_ready()
    except NotReady:
        # The function printed why (one line naming the setting) just above.
        print("make run: the function stopped at start-up (its reason is printed above)", file=sys.stderr)
        return 1
    print(welcome(copy.url, stopping=what_ctrl_c_stops(stack)), flush=True)
    while copy.running:
        if STOP.asked:  # its KeyboardInterrupt was swallowed on the way
            raise KeyboardInterrupt
        time.sleep(0.5)
    print("make run: the function exited", file=sys.stderr)
    return 1


def listen_address(env: dict[str, str] | os._Environ[str]) -> tuple[str, int]:
    """HOST and PORT as functions-framework will read them, checked before anything starts."""
    raw_port = env.get("PORT", "8080")
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise CannotStart(f"PORT must be a port number from 1 to 65535, not {raw_port!r}")
    host = env.get("HOST") or LOOPBACK
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise CannotStart(
            f"HOST={host!r} is not an IP address to listen on (functions-framework reads HOST): "
            "unset it, or HOST=0.0.0.0 to listen on every interface"
        ) from None
    port = int(raw_port)
    if not port_is_free(host, port):
        raise CannotStart(f"port {port} is busy (another program listens on it): choose another, e.g. PORT=8081 make run")
    return host, port


def claim_state_dir(state_dir: Path) -> None:
    """One `make run` per clone: its servers keep their data in state_dir."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = state_dir / PID_FILE
    try:
        other = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        other = 0
    if other and other != os.getpid() and process_alive(other):
        raise CannotStart(
            f"already running in this clone (pid {other}): stop it with Ctrl-C in its terminal or `kill {other}`"
        )
    pid_file.write_text(f"{os.getpid()}\n")



def what_ctrl_c_stops(stack: LocalStack) -> str:
    """What this run started (or is starting), which Ctrl-C stops: never a server it reuses."""
    started = ["the function"] if stack.copies else []
    started += ["Redis"] if stack.redis else []
    started += ["PostgreSQL"] if stack.postgres else []
    if not started:
        return ""
    return " and ".join([", ".join(started[:-1]), started[-1]] if len(started) > 1 else started)


def welcome(url: str, *, stopping: str) -> str:
    return f"""
The orders function is serving on {url}  (Ctrl-C stops {stopping})

  curl -i -X POST {url}/orders \\
    -H 'Content-Type: application/json' \\
    -H 'X-Profile-Id: alice' \\
    -H "Idempotency-Key: $(uuidgen 2>/dev/null || date +%s%N)" \\
    -d '{{"productId": "sku-42", "productQuantity": 2}}'

  curl -s '{url}/orders?profileId=alice'
  curl -s {url}/healthz
"""


if __name__ == "__main__":
    sys.exit(main())
