"""What a new user meets in the first ten minutes of `make run` (python -m devserver):
where it listens, a busy port, a second run, a stray HOST, a bad setting, and what
Ctrl-C says it stops. Every failure is one line naming its cause, and a non-zero exit."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devserver.copies import PROJECT_ROOT
from devserver.servers import PostgresServer, RedisServer, free_port
from devserver.waiting import wait_until

pytestmark = pytest.mark.multiprocess

READY = "/healthz"  # the last line of the welcome text


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="orders-first-run-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_run(state_dir: Path, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "HOST", "PORT")}
    return subprocess.Popen(
        [sys.executable, "-m", "devserver"], cwd=PROJECT_ROOT, text=True,
        env={**clean, "ORDERS_STATE_DIR": str(state_dir), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    """Lines until `marker` (or until the process ends: then everything it printed)."""
    assert process.stdout is not None
    printed = ""
    while marker not in printed:
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=60)
            return printed
        printed += line
    return printed


def ctrl_c(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    return rest


def stopped(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def listening_addresses(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}


def test_make_run_listens_on_loopback_only_unless_host_asks_otherwise(state_dir: Path) -> None:
    port = free_port()
    run = make_run(state_dir, PORT=str(port))
    try:
        printed = read_until(run, READY)
        assert f"serving on http://127.0.0.1:{port}" in printed, printed
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        stopped(run)


def test_a_busy_port_is_named_with_how_to_choose_another_and_exits_non_zero(state_dir: Path) -> None:
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        run = make_run(state_dir, PORT=str(port))
        printed, _ = run.communicate(timeout=60)

    assert run.returncode != 0
    assert f"port {port} is busy" in printed and "PORT=" in printed
    assert "Traceback" not in printed and "serving on" not in printed


def test_a_second_make_run_in_the_same_clone_says_which_pid_runs_already(state_dir: Path) -> None:
    first = make_run(state_dir, PORT=str(free_port()))
    try:
        read_until(first, READY)
        second = make_run(state_dir, PORT=str(free_port()))
        printed, _ = second.communicate(timeout=60)

        assert second.returncode != 0
        assert f"already running in this clone (pid {first.pid})" in printed
        assert "Traceback" not in printed
        assert first.poll() is None  # the first one still serves
    finally:
        stopped(first)


def test_a_stale_pid_file_from_a_killed_run_does_not_block_the_next(state_dir: Path) -> None:
    (state_dir / "make-run.pid").write_text("999999\n")  # no such process
    run = make_run(state_dir, PORT=str(free_port()))
    try:
        assert "serving on" in read_until(run, READY)
    finally:
        stopped(run)


def test_a_host_that_is_not_an_address_is_named_in_one_line(state_dir: Path) -> None:
    run = make_run(state_dir, PORT=str(free_port()), HOST="orders.orders.example.com")
    printed, _ = run.communicate(timeout=60)

    assert run.returncode != 0
    assert "HOST='orders.orders.example.com' is not an IP address" in printed
    assert len(printed.strip().splitlines()) == 1 and "Traceback" not in printed


def test_a_bad_setting_stops_make_run_with_one_line_naming_the_variable(state_dir: Path) -> None:
    run = make_run(state_dir, PORT=str(free_port()), IDEMPOTENCY_TTL_SECONDS="soon")
    printed, _ = run.communicate(timeout=120)

    assert run.returncode != 0
    assert "IDEMPOTENCY_TTL_SECONDS" in printed
    assert "the function stopped at start-up" in printed
    assert "see None" not in printed and "Traceback" not in printed


def test_with_real_servers_given_ctrl_c_says_it_stops_only_the_function(state_dir: Path) -> None:
    postgres = PostgresServer(state_dir / "own-postgres").start()
    redis = RedisServer(state_dir / "own-redis").start()
    try:
        run = make_run(state_dir, PORT=str(free_port()), DATABASE_URL=postgres.url, REDIS_URL=redis.url)
        try:
            printed = read_until(run, READY)
            assert "(Ctrl-C stops the function)" in printed
            assert "PostgreSQL:" not in printed and "Redis:" not in printed
            said = ctrl_c(run)
        finally:
            stopped(run)
        assert run.returncode == 0
        assert "stopping the function ..." in said and "PostgreSQL" not in said
        assert redis.running and postgres.running  # not ours to stop
    finally:
        redis.stop()
        postgres.stop()


def test_with_embedded_servers_ctrl_c_names_all_three(state_dir: Path) -> None:
    run = make_run(state_dir, PORT=str(free_port()))
    try:
        assert "(Ctrl-C stops the function, Redis and PostgreSQL)" in read_until(run, READY)
        said = ctrl_c(run)
    finally:
        stopped(run)
    assert "stopping the function, Redis and PostgreSQL ..." in said
    assert not (state_dir / "make-run.pid").exists()


def started_by(state_dir: Path) -> list[tuple[str, list[str]]]:
    """(name, command line) of each process a `make run` with this state dir started:
    initdb names the dir, the servers work in it (Redis retitles itself, so its command
    line does not say), and every copy of the function inherits ORDERS_STATE_DIR."""
    found = []
    for process in psutil.process_iter():
        try:
            if str(state_dir) in " ".join(process.cmdline()) or process.cwd().startswith(str(state_dir)) or \
                    process.environ().get("ORDERS_STATE_DIR") == str(state_dir):
                found.append((process.name(), process.cmdline()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def running_named(state_dir: Path, name: str, *, argument: str | None = None) -> bool:
    return any(found == name and (argument is None or argument in command) for found, command in started_by(state_dir))


MOMENTS = {  # when Ctrl-C comes: (what to wait for first, what it then says it stops)
    "during initdb": (lambda state: running_named(state, "initdb"), "stopping PostgreSQL ..."),
    "while PostgreSQL starts": (lambda state: running_named(state, "postgres", argument="-p"), "PostgreSQL ..."),
    "while the function starts": (None, "Redis and PostgreSQL ..."),  # its start may not have begun yet
}


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_ctrl_c_before_the_function_serves_stops_everything_it_started(state_dir: Path, moment: str) -> None:
    started, stopping = MOMENTS[moment]
    run = make_run(state_dir, PORT=str(free_port()))
    try:
        if started is None:
            read_until(run, "Schema:")  # the servers are up; the function is being started
        else:
            wait_until(lambda: started(state_dir), what=moment, timeout_seconds=60, poll_seconds=0.005)
        said = ctrl_c(run)
    finally:
        stopped(run)
    assert run.returncode == 0
    assert stopping in said and "Traceback" not in said
    assert not (state_dir / "make-run.pid").exists()
    assert started_by(state_dir) == []  # no server, no copy left

    again = make_run(state_dir, PORT=str(free_port()))  # and nothing half-made stops the next run
    try:
        assert "serving on" in read_until(again, READY)
    finally:
        stopped(again)
