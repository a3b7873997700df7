"""Real PostgreSQL and Redis processes that a test can stop, pause, kill and restart."""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pg8000.native
import psutil
import redis

from .binaries import postgres_bin_dir, postgres_bin_dir_of_version, postgres_major_version, redis_server_binary
from .interrupts import signals_held
from .waiting import NotReady, wait_until

if TYPE_CHECKING:  # only the TLS tests make certificates: `make run` does not import cryptography
    from .tls import Certificates

READY_TIMEOUT_SECONDS = 60.0
# What a durable server (make run, the bench) runs with beyond the defaults: the WAL
# settings postgres/k8s/statefulset.yaml ships, each justified there and in
# docs/operations.md ("PostgreSQL settings"). wal_compression is added where the binaries
# are built with lz4 (Debian's are; pgserver's pip build is not).
DURABLE_POSTGRES_SETTINGS = {
    "checkpoint_timeout": "30min",
    "max_wal_size": "8GB",  # a soft ceiling: an idle `make run` keeps min_wal_size (80 MB)
    "shared_buffers": "1GB",  # reserved, not resident, until pages are read into it
}


# Where listening ports are drawn from: below the kernel's ephemeral range, from which
# every outgoing connection takes its source port. A port bind(0) handed out came from
# that range, and a client connection of another test could take it before the server
# bound it ("Address already in use" for a copy, once in make test on four workers).
LOWEST_LISTEN_PORT = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A port nothing listens on, outside the ephemeral range where the kernel says it."""
    try:
        first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 0
    if first_ephemeral - LOWEST_LISTEN_PORT >= 1_000:
        chooser = random.SystemRandom()
        for _ in range(100):
            port = chooser.randrange(LOWEST_LISTEN_PORT, first_ephemeral)
            if port_is_free("127.0.0.1", port):
                return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Can we listen there? Asked before starting a copy, so a program already on the
    port is reported as such instead of answering our readiness check for us."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


class _Process:
    """A server process in its own process group, so signals reach all its children."""

    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the log, named, for a failure message."""
        if self._log is None:
            return ""
        try:
            text = "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            text = repr(error)
        return f"\n--- {self._log}:\n{text}"

    def _spawn(self, command: list[str], log: Path, user: str | None = None) -> None:
        self._log = log
        with open(log, "ab") as log_file, signals_held():
            self.process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, user=user,
            )

    def _signal(self, signum: int) -> None:
        """To the server and every process it started. PostgreSQL's backends each call
        setsid(), so a process-group signal alone would miss them."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        os.killpg(self.process.pid, signum)
        for child in children:
            try:
                child.send_signal(signum)
            except psutil.NoSuchProcess:
                pass

    def pause(self) -> None:
        """SIGSTOP: the server hangs with its sockets open, like a stuck host."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        self._signal(signal.SIGCONT)
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, self.stop_signal)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def start(self) -> _Process:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        wait_until(self._answers, what=type(self).__name__, timeout_seconds=READY_TIMEOUT_SECONDS,
                   still_running=lambda: self.running, log=self._log)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _built_with_lz4(bin_dir: Path) -> bool:
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return False
    said = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True)
    return "--with-lz4" in said.stdout


class PostgresServer(_Process):
    """A throw-away cluster: trust auth on 127.0.0.1, data in `workdir`."""

    stop_signal = signal.SIGINT  # "fast shutdown": running transactions are rolled back

    def __init__(
        self, workdir: Path, port: int | None = None, *, durable: bool = False,
        max_connections: int = 200, settings: dict[str, str] | None = None,
    ):
        super().__init__()
        # `settings`: -c name=value for this server, over DURABLE_POSTGRES_SETTINGS when durable.
        self.settings = {**(DURABLE_POSTGRES_SETTINGS if durable else {}), **(settings or {})}
        self.workdir = workdir
        self.port = port or free_port()
        self.durable = durable
        self.max_connections = max_connections
        self.bin_dir = postgres_bin_dir()
        self.user = _service_user()
        if self.user is not None:
            _make_reachable(self.bin_dir)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        data = self.workdir / "data"
        _prepare_dir(self.workdir, self.user)
        if not (data / "PG_VERSION").exists():
            self._initdb(data)
        else:
            self._use_binaries_of((data / "PG_VERSION").read_text().strip())
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
                    "-c", f"max_connections={self.max_connections}"]
        if not self.durable:  # tests: speed over crash safety
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        chosen = dict(self.settings)
        if self.durable and "wal_compression" not in chosen and _built_with_lz4(self.bin_dir):
            chosen["wal_compression"] = "lz4"
        for name, value in chosen.items():
            settings += ["-c", f"{name}={value}"]
        self._spawn([str(self.bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), *settings],
                    self.workdir / "postgres.log", user=self.user)
        self._wait_ready()
        return self

    def _use_binaries_of(self, made_by: str) -> None:
        """A data directory opens only with the major version that made it: after a
        first `make run` on pgserver's 16, an installed 15 would refuse it."""
        if postgres_major_version(self.bin_dir) == made_by:
            return
        matching = postgres_bin_dir_of_version(made_by)
        if matching is None:
            raise NotReady(
                f"{self.workdir / 'data'} was made by PostgreSQL {made_by}, and only PostgreSQL "
                f"{postgres_major_version(self.bin_dir)} is found: install PostgreSQL {made_by}, or remove "
                f"{self.workdir} (its orders with it) to start on an empty database"
            )
        self.bin_dir = matching
        if self.user is not None:
            _make_reachable(self.bin_dir)

    def _initdb(self, data: Path) -> None:
        """A new cluster, made in a scratch directory and renamed into place once whole:
        initdb killed half-way (Ctrl-C during the first `make run`) leaves nothing that
        the next run would take for a cluster, and none of its processes behind."""
        scratch = data.with_name(data.name + ".initdb")
        for leftover in (scratch, data):  # data without PG_VERSION was never a cluster
            shutil.rmtree(leftover, ignore_errors=True)
        with signals_held():
            initdb = subprocess.Popen(
                [str(self.bin_dir / "initdb"), "-D", str(scratch), "-U", "postgres",
                 "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, user=self.user,
            )
        try:
            output, _ = initdb.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):  # it may have just ended by itself
                os.killpg(initdb.pid, signal.SIGKILL)  # initdb and the bootstrap backend it runs
            initdb.wait()
            raise
        if initdb.returncode != 0:
            raise subprocess.CalledProcessError(initdb.returncode, initdb.args, output)
        scratch.rename(data)

    def connect(self) -> pg8000.native.Connection:
        return pg8000.native.Connection(
            "postgres", host="127.0.0.1", port=self.port, database="postgres",
            ssl_context=False, timeout=10,
        )

    def _answers(self) -> bool:
        try:
            self.connect().close()
            return True
        except Exception:  # refused, starting up, or not yet accepting connections
            return False


class RedisServer(_Process):
    """`tls`: TLS only (no plain port), clients verified against nothing, the server
    against `tls.authority`; its URL is then `rediss://` naming that authority."""

    def __init__(
        self, workdir: Path, port: int | None = None, *, durable: bool = False, tls: Certificates | None = None,
    ):
        super().__init__()
        self.workdir = workdir
        self.port = port or free_port()
        self.durable = durable
        self.tls = tls
        self.binary = redis_server_binary()

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.tls.authority))}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes"] if self.durable else ["--appendonly", "no"]
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.certificate),
                      "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.authority),
                      "--tls-auth-clients", "no"]
        self._spawn([str(self.binary), *listen, "--bind", "127.0.0.1",
                     "--save", "", *persistence, "--dir", str(self.workdir)],
                    self.workdir / "redis.log")
        self._wait_ready()
        return self

    def client(self) -> redis.Redis:
        if self.tls is not None:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, ssl=True,
                               ssl_ca_certs=str(self.tls.authority))
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def _answers(self) -> bool:
        try:
            with self.client() as client:  # closed now, not left to a finaliser
                return bool(client.ping())
        except redis.RedisError:
            return False


def _service_user() -> str | None:
    """PostgreSQL refuses to run as root: borrow an unprivileged account then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists")


def _prepare_dir(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    entry = pwd.getpwnam(user)
    shutil.chown(path, entry.pw_uid, entry.pw_gid)
    _make_reachable(path)


def _make_reachable(path: Path) -> None:
    """Let the borrowed account reach `path`: add search (x) rights on its parents, as
    pgserver itself does when run as root."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o011)
