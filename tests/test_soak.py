"""A short soak inside the normal run: the audit `make soak` runs for minutes, over
seconds here (three copies, Redis restarted, a copy killed and replaced, and where
nftables can be used PostgreSQL and Redis black-holed and reset)."""

from __future__ import annotations

import pytest

from devserver import netfaults
from soak.report import summary, verdict
from soak.timeline import SoakPlan, run_soak

pytestmark = [pytest.mark.multiprocess, pytest.mark.long]

PARTITIONS = ["black-hole PostgreSQL", "reset Redis", "reset PostgreSQL", "black-hole Redis"]


def test_a_short_soak_with_restarts_kills_partitions_and_resets_keeps_every_acknowledged_order() -> None:
    partitions = netfaults.unavailable_reason() is None
    report = run_soak(SoakPlan(seconds=20, copies=3, clients=3), say=lambda line: None)
    problems, _ = verdict(report)

    assert problems == [], summary(report)
    expected = ["restart Redis", "kill a copy and start another"]
    if partitions:
        expected = ["black-hole PostgreSQL", "reset Redis", "restart Redis", "reset PostgreSQL",
                    "kill a copy and start another", "black-hole Redis"]
    assert [event.split(": ")[1] for event in report.events] == expected, summary(report)
    assert report.audit.acknowledged > 200  # traffic really flowed, before and after the faults
    assert {status for _, status in report.ledger.answers} <= {0, 200, 201, 409, 503}
    if not partitions:
        pytest.skip(f"the soak ran without partitions: {netfaults.unavailable_reason()}")
