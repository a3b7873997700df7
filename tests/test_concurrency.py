"""Many copies, many clients, the same keys at the same moment: one order per key."""

from __future__ import annotations

from collections import defaultdict

import pytest

from conftest import Database
from loadgen.audit import audit
from loadgen.storm import LoadShape, Run, fire

pytestmark = pytest.mark.multiprocess


def assert_one_order_per_key(run: Run, db: Database) -> None:
    connection = db.server.connect()
    try:
        audited = audit(connection, profile_pattern=run.profile, acknowledged=run.acknowledged())
    finally:
        connection.close()
    assert audited.problems() == []
    assert set(audited.stored) == {(run.profile, key) for key in run.key_names}  # no key without its order
    answers: dict[int, list[tuple[bytes, bool]]] = defaultdict(list)
    for result in run.results:
        if result.final.status == 201:
            answers[result.planned.key_index].append((result.body, result.replayed))
    for key_index, bodies in answers.items():
        assert len({body for body, _ in bodies}) == 1, f"key {key_index}: several different orders answered"
        assert sum(replayed for _, replayed in bodies) == len(bodies) - 1  # all but the creator's are replays


def test_duplicates_spread_over_four_copies_make_exactly_one_order_per_key(start_copies, db: Database) -> None:
    copies = start_copies(4)

    run = fire(LoadShape(keys=100, repeats=10, clients=100), [c.url for c in copies])

    assert [r.final.error for r in run.results if r.final.error] == []
    assert {r.final.status for r in run.results} == {201}  # every duplicate waited for the original
    assert len({r.served_by for r in run.results}) == 4
    assert_one_order_per_key(run, db)


def test_with_redis_down_postgresql_alone_still_makes_one_order_per_key(
    start_copies, db: Database, redis_server
) -> None:  # type: ignore[no-untyped-def]
    copies = start_copies(2)
    redis_server.kill()

    run = fire(LoadShape(keys=20, repeats=10, clients=100), [c.url for c in copies])

    assert [r.final.error for r in run.results if r.final.error] == []
    assert {r.final.status for r in run.results} == {201}
    assert_one_order_per_key(run, db)
