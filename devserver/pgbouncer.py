"""A real PgBouncer in transaction-pooling mode in front of one PostgresServer.

Started from the system's `pgbouncer` (Debian's package; the pip fallbacks have none),
so tests see what production sees: many client connections multiplexed over a few
server connections, each server connection lent for one transaction only.
"""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import pg8000.native

from .servers import PostgresServer, _Process, _prepare_dir, _service_user, free_port

INSTALL_HINT = "apt-get update && apt-get install -y pgbouncer"


def pgbouncer_binary() -> Path | None:
    """Debian puts it in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


class PgBouncerServer(_Process):
    """PgBouncer on a free port; every database name is passed on to `postgres`.

    Auth is `trust` like the test PostgreSQL's: the user still has to be listed in the
    auth file, so it names the one user the tests connect as.
    """

    # SIGINT is PgBouncer's "safe shutdown": it waits for clients to finish; SIGTERM
    # ("immediate") is what a pod gets, and what a test wants.
    stop_signal = signal.SIGTERM

    def __init__(
        self, workdir: Path, postgres: PostgresServer, *, port: int | None = None,
        default_pool_size: int = 8, max_client_conn: int = 200,
    ) -> None:
        super().__init__()
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError(f"pgbouncer is not installed: {INSTALL_HINT}")
        self.binary = binary
        self.workdir = workdir
        self.postgres = postgres
        self.port = port or free_port()
        self.default_pool_size = default_pool_size
        self.max_client_conn = max_client_conn
        # PgBouncer refuses to run as root, like PostgreSQL.
        self.user = _service_user()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PgBouncerServer:
        _prepare_dir(self.workdir, self.user)
        (self.workdir / "userlist.txt").write_text('"postgres" ""\n')
        config = self.workdir / "pgbouncer.ini"
        config.write_text(self._config())
        self._spawn([str(self.binary), str(config)], self.workdir / "pgbouncer.log", user=self.user)
        self._wait_ready()
        return self

    def _config(self) -> str:
        return f"""\
[databases]
* = host=127.0.0.1 port={self.postgres.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.workdir / "userlist.txt"}
admin_users = postgres
pool_mode = transaction
default_pool_size = {self.default_pool_size}
max_client_conn = {self.max_client_conn}
reserve_pool_size = 0
; After PostgreSQL went away, try it again within a second, not the default 15 s,
; so a restart behind PgBouncer costs the clients about as long as the restart.
server_login_retry = 1
server_connect_timeout = 5
; Clients wait this long for a free server connection before PgBouncer gives up on
; them; longer than any statement timeout the function sets.
query_wait_timeout = 30
log_connections = 0
log_disconnections = 0
"""

    def connect(self, database: str = "postgres") -> pg8000.native.Connection:
        """A client connection through PgBouncer (`database="pgbouncer"`: its console)."""
        return pg8000.native.Connection(
            "postgres", host="127.0.0.1", port=self.port, database=database,
            ssl_context=False, timeout=10,
        )

    def pools(self) -> list[dict[str, Any]]:
        """SHOW POOLS from the admin console: client and server connections per pool."""
        console = self.connect("pgbouncer")
        try:
            rows = console.run("SHOW POOLS")
            names = [column["name"] for column in console.columns]
        finally:
            console.close()
        return [dict(zip(names, row)) for row in rows]

    def _answers(self) -> bool:
        """Listening is ready: PgBouncer connects to PostgreSQL only when a client asks."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False
