"""The duplicate-storm demo, run as users run it: its own servers, two copies, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devserver.copies import PROJECT_ROOT

pytestmark = pytest.mark.multiprocess


def test_demo_on_two_spawned_copies_reports_one_order_per_key() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "demo", "--spawn", "2", "--keys", "20", "--repeats", "5", "--json"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=50,
    )

    assert finished.returncode == 0, finished.stderr
    figures = json.loads(finished.stdout)
    assert figures["duplicatesCreated"] == 0
    assert figures["ordersAfterwards"] == figures["distinctKeys"] == 20
    assert figures["answersCarryingAnotherOrder"] == 0
    assert figures["requests"] == 100
    assert len(figures["requestsPerServedBy"]) == 2  # both copies answered
