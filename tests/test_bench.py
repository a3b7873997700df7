"""`python -m bench --quick` inside the normal run: the suite still measures every scenario
docs/bench.md quotes. Its figures are reported, never asserted: a shared machine's numbers
are not a test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devserver.copies import PROJECT_ROOT

pytestmark = [pytest.mark.multiprocess, pytest.mark.long]


def test_a_quick_bench_measures_both_floors_the_function_and_judges_every_target(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert set(results["scenarios"]) >= {"floorDefault", "floorAsgi", "floorReplay", "create", "createUnbatched",
                                       "replay", "replayAfterFlush", "storm"}
    for name, points in results["scenarios"].items():
        for point in points.values():
            assert point["requests"] > 0 and point["errors"] == 0, (name, point)
            assert point["serverContextSwitchesPerRequest"] >= 0, (name, point)
    assert "--asgi" in results["floorCommands"]["floorAsgi"]
    assert "--asgi" not in results["floorCommands"]["floorDefault"]
    assert all(point["tookExpectedPath"] for name in ("create", "createUnbatched", "replay", "replayAfterFlush")
               for point in results["scenarios"][name].values())
    storm = next(iter(results["scenarios"]["storm"].values()))["storm"]
    assert storm["duplicatesCreated"] == 0
    assert {row["met"] for row in results["targets"]} <= {True, False} and results["targets"]
    assert results["coldStart"]["samples"] and results["listing"]["pages"]
    assert results["coldStartFloor"]["samples"] and results["coldStart"]["secondRequest"]["p50"]
    assert results["tracing"]["points"]["sampled5"]["requests"] > 0
    assert next(iter(results["ratios"]["replay"].values()))["overReplayFloor"]["throughput"]
    publishing = results["publishing"]
    assert all(point["requests"] > 0 and point["errors"] == 0 for point in publishing["points"].values())
    assert publishing["pendingAtEnd"] == 0 and publishing["distinctEventIds"] > 0
    report = (tmp_path / "latest.md").read_text()
    assert "x ASGI floor" in report and "## Targets" in report
    print(report)  # the figures, for whoever reads the test log
