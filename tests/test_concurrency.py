"""Many copies, many clients, the same keys at the same moment: one order per key."""

from __future__ import annotations

import pytest
from typing import Callable

from devserver.copies import FunctionCopy
from devserver.servers import RedisServer
from loadgen.storm import LoadShape, fire
from support import Database, assert_one_order_per_key

pytestmark = pytest.mark.multiprocess


def test_duplicates_spread_over_four_copies_make_exactly_one_order_per_key(start_copies, db: Database) -> None:
    copies = start_copies(4)

    run = fire(LoadShape(keys=100, repeats=10, clients=100), [c.url for c in copies])

    assert [r.final.error for r in run.results if r.final.error] == []
    assert {r.final.status for r in run.results} == {201}  # every duplicate waited for the original
    assert len({r.served_by for r in run.results}) == 4
    assert_one_order_per_key(run, db)


def test_with_redis_down_postgresql_alone_still_makes_one_order_per_key(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, redis_server: RedisServer
) -> None:
    copies = start_copies(2)
    redis_server.kill()

    run = fire(LoadShape(keys=20, repeats=10, clients=100), [c.url for c in copies])

    assert [r.final.error for r in run.results if r.final.error] == []
    assert {r.final.status for r in run.results} == {201}
    assert_one_order_per_key(run, db)
