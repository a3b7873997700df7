"""Network faults between local processes: a server's port black-holed or reset with nftables.

This kernel has nftables but no netem (no delay, no loss rate), so two partitions are
possible, both on loopback and both as root:

- black hole: every packet to or from the port is dropped. Connects time out (no
  refusal), established connections hang with their bytes queued; once healed, TCP
  retransmits them and the connections go on as if nothing happened.
- reset: every packet to the port is answered with a TCP reset. Connects are refused at
  once and established connections are torn down at their next send.

All rules live in one table of our own (`inet orders_faults_<pid>`), one chain per port,
hooked on output (loopback traffic passes it in both directions). Nothing else in the
ruleset is touched. Healing deletes a port's chain; `close` deletes the table, and runs at
exit too, so no rule outlives the process that made it, whatever failed; a table left by a
process killed outright (no atexit) is deleted by the next one that makes faults.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import subprocess
from typing import Iterator

from .waiting import process_alive

INSTALL_HINT = "apt-get install -y nftables"
FAMILY = "inet"
TABLE_PREFIX = "orders_faults_"
# Before the usual filter chains (priority 0), so a local accept rule cannot let a fault through.
PRIORITY = -10


def nft_binary() -> str | None:
    """Debian puts nft in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")


def unavailable_reason() -> str | None:
    """Why faults cannot be made here (None: they can): a test skips with this reason."""
    if nft_binary() is None:
        return f"nft is not installed; install it with: {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "network faults need root (nftables rules on loopback)"
    probe = NetworkFaults(table=f"{TABLE_PREFIX}probe_{os.getpid()}")
    try:
        probe.black_hole(1)
    except subprocess.CalledProcessError as exc:
        return f"nft cannot add rules here: {exc.stderr.strip() if exc.stderr else exc}"
    finally:
        probe.close()
    return None


class NetworkFaults:
    """Faults on local ports, in a table of their own; use as a context manager."""

    def __init__(self, table: str | None = None) -> None:
        binary = nft_binary()
        if binary is None:
            raise RuntimeError(f"nft is not installed: {INSTALL_HINT}")
        self._nft = binary
        self.table = table or f"{TABLE_PREFIX}{os.getpid()}"
        self._ports: dict[int, str] = {}  # port -> the fault on it ("black hole" or "reset")
        self._made = False
        _remove_orphans(binary)
        atexit.register(self.close)

    def __enter__(self) -> NetworkFaults:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def faults(self) -> dict[int, str]:
        """The ports faulted now, and how."""
        return dict(self._ports)

    def black_hole(self, port: int) -> None:
        """Drop every packet to and from `port`: connects and established connections hang."""
        self._set(port, "black hole", [f"tcp dport {port} drop", f"tcp sport {port} drop"])

    def reset(self, port: int) -> None:
        """Answer every packet to `port` with a TCP reset (and the server's packets too):
        connects are refused, established connections torn down at their next send."""
        # A reset itself passes: the ones these rules make carry the port too.
        self._set(port, "reset", [f"tcp dport {port} tcp flags & rst == 0 reject with tcp reset",
                                  f"tcp sport {port} tcp flags & rst == 0 reject with tcp reset"])

    def heal(self, port: int | None = None) -> None:
        """Remove the fault on `port` (every port: None); queued bytes then flow again."""
        for faulted in [port] if port is not None else list(self._ports):
            if self._ports.pop(faulted, None) is not None:
                self._run(f"delete chain {FAMILY} {self.table} {_chain(faulted)}\n")

    @contextlib.contextmanager
    def black_holed(self, port: int) -> Iterator[None]:
        self.black_hole(port)
        try:
            yield
        finally:
            self.heal(port)

    @contextlib.contextmanager
    def resetting(self, port: int) -> Iterator[None]:
        self.reset(port)
        try:
            yield
        finally:
            self.heal(port)

    def close(self) -> None:
        """Every rule gone: the table and its chains are deleted (idempotent)."""
        self._ports.clear()
        atexit.unregister(self.close)
        if self._made:
            self._made = False
            subprocess.run([self._nft, "delete", "table", FAMILY, self.table],
                           capture_output=True, text=True, check=False)

    def _set(self, port: int, fault: str, rules: list[str]) -> None:
        """The port's chain replaced in one transaction: never a moment with half the rules."""
        chain = _chain(port)
        script = f"add table {FAMILY} {self.table}\n"
        if port in self._ports:
            script += f"delete chain {FAMILY} {self.table} {chain}\n"
        script += (f"add chain {FAMILY} {self.table} {chain} "
                   f"{{ type filter hook output priority {PRIORITY} ; policy accept ; }}\n")
        script += "".join(f"add rule {FAMILY} {self.table} {chain} {rule}\n" for rule in rules)
        self._made = True  # even if the script fails half-way, close() deletes what exists
        self._run(script)
        self._ports[port] = fault

    def _run(self, script: str) -> None:
        subprocess.run([self._nft, "-f", "-"], input=script, capture_output=True, text=True, check=True)


def _chain(port: int) -> str:
    return f"port_{port}"


def _remove_orphans(nft: str) -> None:
    """Tables left by a process that was killed before it could delete its own (SIGKILL
    skips atexit): their rules would partition a port for good."""
    listing = subprocess.run([nft, "list", "tables", FAMILY], capture_output=True, text=True, check=False)
    for pid in re.findall(rf"^table {FAMILY} {TABLE_PREFIX}(?:probe_)?(\d+)$", listing.stdout, re.MULTILINE):
        if not process_alive(int(pid)):
            for name in (f"{TABLE_PREFIX}{pid}", f"{TABLE_PREFIX}probe_{pid}"):
                subprocess.run([nft, "delete", "table", FAMILY, name], capture_output=True, check=False)
