"""The Redis scripts, against a real Redis: writes check the owner inside Redis."""

from __future__ import annotations

import asyncio

import pytest

from function.claims import ClaimStore
from function.records import Done, InFlight, redis_key
from function.targets import parse_redis_url

KEY = redis_key("alice", "k")
pytestmark = pytest.mark.anyio  # the store is the function's own async client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def claims(redis_server, db) -> ClaimStore:  # type: ignore[no-untyped-def]
    return ClaimStore(parse_redis_url(redis_server.url), timeout_seconds=1)


async def test_the_first_claim_wins_and_later_ones_read_it(claims: ClaimStore) -> None:
    assert await claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000) is None
    assert await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == InFlight("fp", "a")


async def test_a_copy_whose_lease_ran_out_cannot_overwrite_or_free_the_next_owners_claim(claims: ClaimStore) -> None:
    await claims.claim_or_read(KEY, InFlight("fp", "slow"), 50)
    await asyncio.sleep(0.1)  # the slow owner's lease expires in Redis
    assert await claims.claim_or_read(KEY, InFlight("fp", "next"), 10_000) is None

    await claims.finish(KEY, "slow", Done("fp", "order-1", b"{}"), 60_000)
    await claims.release(KEY, "slow")

    assert await claims.claim_or_read(KEY, InFlight("fp", "third"), 10_000) == InFlight("fp", "next")


async def test_the_owner_finishes_its_claim_and_nobody_overwrites_an_answer(claims: ClaimStore) -> None:
    await claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000)
    await claims.finish(KEY, "a", Done("fp", "order-1", b'{"orderId":"order-1"}'), 60_000)
    await claims.finish(KEY, None, Done("fp2", "order-2", b"{}"), 60_000)

    assert await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == Done(
        "fp", "order-1", b'{"orderId":"order-1"}'
    )


async def test_an_answer_from_postgresql_is_written_where_redis_had_nothing(claims: ClaimStore) -> None:
    await claims.finish(KEY, None, Done("fp", "order-1", b"{}"), 60_000)
    assert await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == Done("fp", "order-1", b"{}")


async def test_the_owner_releases_its_claim_so_a_retry_can_start_at_once(claims: ClaimStore) -> None:
    await claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000)
    await claims.release(KEY, "a")
    assert await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) is None


async def test_records_expire_by_redis_clock_lease_for_claims_ttl_for_answers(claims: ClaimStore, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    await claims.claim_or_read(KEY, InFlight("fp", "a"), 30_000)
    assert 29_000 < client.pttl(KEY) <= 30_000
    await claims.finish(KEY, "a", Done("fp", "order-1", b"{}"), 86_400_000)
    assert client.pttl(KEY) > 86_000_000
