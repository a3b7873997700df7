"""CPU seconds spent by a process and everything it started (a copy's gunicorn master and
workers; PostgreSQL's postmaster and backends).

CPU per request is steadier than throughput on a shared machine, and a copy at ~1.0 CPU
seconds per second is bound by its one worker's GIL, whatever else the machine has free.
"""

from __future__ import annotations

import psutil


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
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
            total += times.user + times.system
    return total
