"""Worker and thread settings (functions-framework reads WORKERS and THREADS): the floor,
create and replay at the highest concurrency under each, and what Knative runs.

The Knative Service's values are read from knative/configmap.yaml, so the report says
what is deployed, not what this file assumes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from devserver.copies import PROJECT_ROOT, FunctionCopy

from . import traffic
from .loadgen import measure
from .stats import figures, ratio

CONFIGMAP = PROJECT_ROOT / "knative" / "configmap.yaml"
_DATA_ENTRY = re.compile(r'^  ([A-Z][A-Z0-9_]*): "?([^"#]*?)"?\s*(#.*)?$')
REPLAY_KEYS = 500


def knative_settings() -> dict[str, str]:
    """The `data:` entries of the ConfigMap the Service takes its environment from."""
    settings, in_data = {}, False
    for line in CONFIGMAP.read_text().splitlines():
        if line.startswith("data:"):
            in_data = True
        elif in_data and line and not line.startswith((" ", "#")):
            in_data = False
        elif in_data and (entry := _DATA_ENTRY.match(line)):
            settings[entry.group(1)] = entry.group(2)
    return settings


def try_settings(
    tried: tuple[tuple[int, int], ...], connections: int, seconds: float, rounds: int,
    start_function: Callable[[dict[str, str]], FunctionCopy],
    start_floor: Callable[[dict[str, str]], FunctionCopy],
) -> list[dict[str, Any]]:
    """Each setting on fresh copies, `rounds` times over; each figure keeps its best round
    (as the scenario matrix does: other load on the machine only slows a run down)."""
    measured: dict[tuple[int, int], list[dict[str, dict[str, Any]]]] = {setting: [] for setting in tried}
    for _ in range(rounds):
        for setting in tried:
            measured[setting].append(_one_setting(*setting, connections, seconds, start_function, start_floor))
    rows = []
    for (workers, threads), runs in measured.items():
        best = {name: max((run[name] for run in runs), key=lambda f: f["throughput"])
                for name in ("floor", "create", "replay")}
        rows.append({
            "workers": workers, "threads": threads, "connections": connections, **best,
            "createThroughputRatio": ratio(best["create"]["throughput"], best["floor"]["throughput"]),
            "replayThroughputRatio": ratio(best["replay"]["throughput"], best["floor"]["throughput"]),
            "replayP99Ratio": ratio(best["replay"]["p99"], best["floor"]["p99"]),
        })
    return rows


def _one_setting(
    workers: int, threads: int, connections: int, seconds: float,
    start_function: Callable[[dict[str, str]], FunctionCopy],
    start_floor: Callable[[dict[str, str]], FunctionCopy],
) -> dict[str, dict[str, Any]]:
    env = {"WORKERS": str(workers), "THREADS": str(threads)}
    function, floor = start_function(env), start_floor(env)
    profile = f"bench-settings-{uuid.uuid4().hex[:12]}"
    try:
        floor_figures = _measured(floor.url, connections, seconds,
                                  traffic.new_keys(floor.url, "bench-floor", "settings"))
        create = _measured(function.url, connections, seconds, traffic.new_keys(function.url, profile, "create"))
        prepared = [traffic.create_request(function.url, profile, f"replay-{n}") for n in range(REPLAY_KEYS)]
        measure(function.url, 16, traffic.once_each(prepared), seconds=60)  # creates them
        replay = _measured(function.url, connections, seconds, traffic.cycling(prepared))
    finally:
        function.stop()
        floor.stop()
    return {"floor": floor_figures, "create": create, "replay": replay}


def _measured(url: str, connections: int, seconds: float, stream: Callable[[], bytes | None]) -> dict[str, Any]:
    measure(url, connections, stream, seconds=min(1.0, seconds / 2))  # warm-up
    return figures(measure(url, connections, stream, seconds=seconds))
