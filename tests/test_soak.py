"""A short soak inside the normal run: the audit `make soak` runs for minutes, over
seconds here (three copies, Redis restarted, a copy killed and replaced)."""

from __future__ import annotations

import pytest

from soak.report import summary, verdict
from soak.timeline import SoakPlan, run_soak

pytestmark = pytest.mark.multiprocess


def test_a_short_soak_with_redis_restarted_and_a_copy_killed_keeps_every_acknowledged_order() -> None:
    report = run_soak(SoakPlan(seconds=25, copies=3, clients=3), say=lambda line: None)
    problems, _ = verdict(report)

    assert problems == [], summary(report)
    assert [event.split(": ")[1] for event in report.events] == [
        "restart Redis", "kill a copy and start another",
    ]
    assert report.audit.acknowledged > 200  # traffic really flowed, before and after the faults
    assert {status for _, status in report.ledger.answers} <= {0, 200, 201, 409, 503}
