"""CPU seconds spent by a process and everything it started (a copy's gunicorn master and
workers; PostgreSQL's postmaster and backends).

CPU per request is steadier than throughput on a shared machine, and a copy at ~1.0 CPU
seconds per second is bound by its one worker's GIL, whatever else the machine has free.
Voluntary context switches per request say how often its threads hand over: the event
loop waiting for the network, a pg8000 thread for PostgreSQL, either for the GIL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float  # user + system
    voluntary_switches: int  # times a thread gave up the CPU: it waited for I/O, a lock or the GIL

    def __sub__(self, earlier: Usage) -> Usage:
        return Usage(self.cpu_seconds - earlier.cpu_seconds, self.voluntary_switches - earlier.voluntary_switches)


def tree_usage(pids: list[int]) -> Usage:
    cpu, switches = 0.0, 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:  # a backend that ended meanwhile
                continue
            cpu += times.user + times.system
            switches += _voluntary_switches(process.pid)
    return Usage(cpu, switches)


def _voluntary_switches(pid: int) -> int:
    """Summed over the process's threads: /proc/PID/status (and psutil) count only the
    main thread's, which would miss every pg8000 thread. 0 where /proc is not Linux's."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def tree_cpu_seconds(pids: list[int]) -> float:
    return tree_usage(pids).cpu_seconds
