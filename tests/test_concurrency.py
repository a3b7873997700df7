"""Many copies, many clients, the same keys at the same moment: one order per key."""

from __future__ import annotations

import pytest

from conftest import Database
from storm import storm

pytestmark = pytest.mark.multiprocess


def assert_one_order_per_key(result, db: Database, profile: str = "storm") -> None:  # type: ignore[no-untyped-def]
    rows = db.execute(
        "SELECT idempotency_key, count(*) FROM orders WHERE profile_id = :p GROUP BY 1", p=profile
    )
    assert {key: count for key, count in rows} == {key: 1 for key in result.answers}
    for key, responses in result.answers.items():
        bodies = {r.content for r in responses if r.status_code == 201}
        assert len(bodies) == 1, f"{key}: {len(bodies)} different orders answered"
        replays = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
        assert len(replays) == sum(r.status_code == 201 for r in responses) - 1


def test_duplicates_spread_over_four_copies_make_exactly_one_order_per_key(start_copies, db: Database) -> None:
    copies = start_copies(4)

    result = storm([c.url for c in copies], keys=100, duplicates=10)

    assert result.errors == []
    assert result.statuses() == {201: 1000}  # every duplicate waited for the original
    assert len(result.served_by()) == 4
    assert_one_order_per_key(result, db)


def test_with_redis_down_postgresql_alone_still_makes_one_order_per_key(
    start_copies, db: Database, redis_server
) -> None:  # type: ignore[no-untyped-def]
    copies = start_copies(2)
    redis_server.kill()

    result = storm([c.url for c in copies], keys=20, duplicates=10)

    assert result.errors == []
    assert result.statuses() == {201: 200}
    assert_one_order_per_key(result, db)
