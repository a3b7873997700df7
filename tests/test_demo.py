"""The duplicate-storm demo, run as users run it: its own servers, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devserver.copies import PROJECT_ROOT

pytestmark = [pytest.mark.multiprocess, pytest.mark.long]


def test_demo_on_two_spawned_copies_reports_one_order_per_key() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "demo", "--spawn", "2", "--keys", "20", "--repeats", "5", "--json"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )

    assert finished.returncode == 0, finished.stderr
    figures = json.loads(finished.stdout)
    assert figures["duplicatesCreated"] == 0
    assert figures["ordersAfterwards"] == figures["distinctKeys"] == 20
    assert figures["answersCarryingAnotherOrder"] == 0
    assert figures["requests"] == 100
    assert len(figures["requestsPerServedBy"]) == 2  # both copies answered


def test_the_autoscaled_demo_starts_from_zero_scales_up_drains_back_to_zero_and_cold_starts_again(
    tmp_path: Path,
) -> None:
    plot = tmp_path / "timeline.png"
    finished = subprocess.run(
        [sys.executable, "-m", "demo", "--autoscale", "--json", "--plot", str(plot)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240,
    )

    assert finished.returncode == 0, finished.stderr
    figures = json.loads(finished.stdout)
    assert figures["duplicatesCreated"] == 0 and figures["answersCarryingAnotherOrder"] == 0
    assert figures["ordersAfterwards"] == figures["distinctKeys"] > 0
    assert figures["peakCopies"] >= 2  # the first wave's clients exceed the target of one copy
    waves = figures["waveStartedAtSeconds"]
    cold_starts_per_wave = [
        sum(1 for start in figures["copyStartedAtSeconds"] if start >= wave) for wave in waves]
    assert cold_starts_per_wave[1] >= 1  # the second wave met a cold start after the scale to zero
    assert figures["drains"] == figures["coldStarts"]  # every copy was drained in the end
    assert figures["scaledToZero"] is True
    assert figures["heldRequests"] >= 1  # the first requests waited for a cold copy, none failed
    assert figures["outcomes"]["error"] == 0
    assert set(figures["copyExitStatuses"]) == {"0"}  # SIGTERM: each copy finished and exited cleanly
    assert plot.stat().st_size > 10_000
    # Every order announced under its own id, across the sink's outage and the copies' churn.
    assert figures["distinctEventIds"] == figures["ordersAfterwards"]
    assert figures["ordersWithoutEvent"] == figures["eventsForNoOrder"] == 0
    assert figures["sinkOutageSeconds"][1] > figures["sinkOutageSeconds"][0] > 0
