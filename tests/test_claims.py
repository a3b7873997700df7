"""The Redis scripts, against a real Redis: writes check the owner inside Redis."""

from __future__ import annotations

import time

import pytest

from function.claims import ClaimStore
from function.records import Done, InFlight, redis_key

KEY = redis_key("alice", "k")


@pytest.fixture
def claims(redis_server, db) -> ClaimStore:  # type: ignore[no-untyped-def]
    return ClaimStore(redis_server.url, timeout_seconds=1)


def test_the_first_claim_wins_and_later_ones_read_it(claims: ClaimStore) -> None:
    assert claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000) is None
    assert claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == InFlight("fp", "a")


def test_a_copy_whose_lease_ran_out_cannot_overwrite_or_free_the_next_owners_claim(claims: ClaimStore) -> None:
    claims.claim_or_read(KEY, InFlight("fp", "slow"), 50)
    time.sleep(0.1)  # the slow owner's lease expires in Redis
    assert claims.claim_or_read(KEY, InFlight("fp", "next"), 10_000) is None

    claims.finish(KEY, "slow", Done("fp", "order-1", b"{}"), 60_000)
    claims.release(KEY, "slow")

    assert claims.claim_or_read(KEY, InFlight("fp", "third"), 10_000) == InFlight("fp", "next")


def test_the_owner_finishes_its_claim_and_nobody_overwrites_an_answer(claims: ClaimStore) -> None:
    claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000)
    claims.finish(KEY, "a", Done("fp", "order-1", b'{"orderId":"order-1"}'), 60_000)
    claims.finish(KEY, None, Done("fp2", "order-2", b"{}"), 60_000)

    assert claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == Done(
        "fp", "order-1", b'{"orderId":"order-1"}'
    )


def test_an_answer_from_postgresql_is_written_where_redis_had_nothing(claims: ClaimStore) -> None:
    claims.finish(KEY, None, Done("fp", "order-1", b"{}"), 60_000)
    assert claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == Done("fp", "order-1", b"{}")


def test_the_owner_releases_its_claim_so_a_retry_can_start_at_once(claims: ClaimStore) -> None:
    claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000)
    claims.release(KEY, "a")
    assert claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) is None


def test_records_expire_by_redis_clock_lease_for_claims_ttl_for_answers(claims: ClaimStore, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    claims.claim_or_read(KEY, InFlight("fp", "a"), 30_000)
    assert 29_000 < client.pttl(KEY) <= 30_000
    claims.finish(KEY, "a", Done("fp", "order-1", b"{}"), 86_400_000)
    assert client.pttl(KEY) > 86_000_000
