"""The engine: one idempotency key makes exactly one order, whatever the retries, copies,
crashes or lost cache. HTTP and CloudEvents both come through `create_order`.

Redis answers replays in one round trip and makes concurrent duplicates wait for the
original; PostgreSQL's unique (profile, key) constraint decides what exists, so every
guarantee holds with Redis empty, evicted or down. A waiting duplicate awaits: it holds
no thread and no PostgreSQL connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable

from . import metrics
from .claims import CLAIMED, CacheUnavailable, ClaimStore
from .fingerprint import fingerprint
from .labels import Outcome, WaitEnded
from .orders import OrderStore
from .problems import FingerprintMismatch, RequestInFlight
from .records import Create, Done, InFlight, Record, Reject, Replay, Wait, decide, legacy_key, redis_key, rejects
from .settings import Settings
from .validation import OrderRequest

if TYPE_CHECKING:
    from .tracing import Tracing

FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.005, 0.1
# A claim still in flight after this long is checked once against PostgreSQL. A create
# takes a few ms, so storm duplicates rarely pay for the read; a stale claim (one a hung
# Redis ran after its request had finished on PostgreSQL alone, or one whose owner died
# after committing) then blocks its key for this long instead of the whole lease.
STALE_CLAIM_CHECK_SECONDS = 0.1
NO_SPAN: contextlib.nullcontext[Any] = contextlib.nullcontext()  # tracing off: a wait makes no span
# The previous version's records (`idem:v1:`) are read on a miss during a rolling update:
# for this long after the first copy of this version asked (and two leases more, for the
# claims old copies still hold). Each read costs a create one more script call; after the
# window a key the old version finished replays from PostgreSQL once, then from Redis.
LEGACY_READ_SECONDS = 3600
MISMATCH_DETAIL = "this idempotency key was first used with a different body; use a new key for a new order"


_owner_prefix = ""
_owner_numbers = itertools.count()


def _new_owner_prefix() -> None:
    global _owner_prefix
    _owner_prefix = secrets.token_urlsafe(12)


_new_owner_prefix()
os.register_at_fork(after_in_child=_new_owner_prefix)  # a forked worker must not share its parent's


def owner_token() -> str:
    """Unique to the request: a random prefix per process (per worker after the fork) and
    a counter, rather than 16 bytes from the OS per request. Never leaves the function."""
    return f"{_owner_prefix}.{next(_owner_numbers):x}"


@dataclass(frozen=True)
class Answer:
    order_id: str
    body: bytes
    outcome: Outcome
    degraded: bool = False  # Redis was skipped: PostgreSQL alone decided

    @property
    def replayed(self) -> bool:
        return self.outcome is not Outcome.CREATED


@dataclass(frozen=True)
class _WaitEnded:
    """How a wait for an in-flight original ended, when it did not end in an error."""

    how: WaitEnded
    answer: Answer | None = None  # done, found-in-postgres: the answer to give
    taken_over: bool = False      # claimed: the original's lease had run out


class IdempotencyEngine:
    def __init__(
        self, settings: Settings, claims: ClaimStore, orders: OrderStore, tracing: Tracing | None = None,
    ) -> None:
        self._claims = claims
        self._orders = orders
        self._tracing = tracing
        self._lease_ms = settings.idempotency_lease_seconds * 1000
        self._ttl_ms = settings.idempotency_ttl_seconds * 1000
        self._wait_seconds = settings.idempotency_wait_seconds
        self._replay_on_mismatch = settings.idempotency_on_mismatch == "replay"
        self._legacy_window_ms = LEGACY_READ_SECONDS * 1000 + 2 * self._lease_ms
        self._legacy_reads_until: float | None = None  # loop time; None: Redis not asked yet

    async def create_order(self, profile: str, key: str | None, request: OrderRequest) -> Answer:
        request_fingerprint = fingerprint(request.canonical())
        if key is None:  # only when IDEMPOTENCY_KEY_REQUIRED=false: no deduplication
            order, _ = await self._orders.insert_or_get(profile, None, request_fingerprint, request)
            return Answer(order.order_id, order.body(), Outcome.CREATED)

        record_key = redis_key(profile, key)
        claim = InFlight(request_fingerprint, owner=owner_token())
        try:
            found = await self._claims.claim_or_read(record_key, claim, self._lease_ms)
        except CacheUnavailable:
            return await self._create_in_postgres(profile, key, claim, record_key, request, degraded=True)
        if found is CLAIMED and await self._reading_legacy():
            found = await self._legacy_answer(profile, key, claim, record_key) or found
        match decide(found, request_fingerprint, self._replay_on_mismatch):
            case Create(taken_over):
                return await self._create_claimed(profile, key, claim, record_key, request, taken_over)
            case Reject():
                raise FingerprintMismatch(MISMATCH_DETAIL)
            case Replay(done):
                return Answer(done.order_id, done.body, Outcome.REPLAYED_REDIS)
            case Wait():  # the original is in flight on some copy, or its claim is stale
                pass
        ended = await self._wait_for_original(profile, key, claim, record_key)
        if ended.answer is not None:
            return ended.answer
        if ended.how is WaitEnded.CLAIMED:
            return await self._create_claimed(profile, key, claim, record_key, request, ended.taken_over)
        return await self._create_in_postgres(profile, key, claim, record_key, request, degraded=True)

    async def _create_claimed(
        self, profile: str, key: str, claim: InFlight, record_key: bytes, request: OrderRequest, taken_over: bool,
    ) -> Answer:
        if taken_over:  # its owner died or hung past the lease; PostgreSQL still decides
            metrics.CLAIMS_TAKEN_OVER.inc()
        return await self._create_in_postgres(profile, key, claim, record_key, request)

    async def _wait_for_original(self, profile: str, key: str, claim: InFlight, record_key: bytes) -> _WaitEnded:
        """One wait, counted once by how it ended (and one span when tracing): every
        duplicate that waits lands in exactly one `ended` of orders_waits_total."""
        how = WaitEnded.FAILED  # PostgreSQL failed the stale-claim check, or the request was cancelled
        with (NO_SPAN if self._tracing is None else self._tracing.span("wait")) as span:
            try:
                ended = await self._poll(profile, key, claim, record_key)
                how = ended.how
                return ended
            except RequestInFlight:
                how = WaitEnded.CONFLICT
                raise
            except FingerprintMismatch:
                how = WaitEnded.MISMATCH
                raise
            finally:
                metrics.WAIT_ENDED[how].inc()
                if span is not None:
                    span.set_attribute("orders.wait.ended", how.value)

    async def _poll(self, profile: str, key: str, claim: InFlight, record_key: bytes) -> _WaitEnded:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._wait_seconds
        poll_seconds, checked_postgres = FIRST_POLL_SECONDS, False
        while True:
            now = loop.time()
            if not checked_postgres and (now - started >= STALE_CLAIM_CHECK_SECONDS or now >= deadline):
                checked_postgres = True
                stored = await self._stored_answer(profile, key, claim.fingerprint)
                if stored is not None:
                    return _WaitEnded(WaitEnded.FOUND_IN_POSTGRES, stored)
                now = loop.time()
            if now >= deadline:
                raise RequestInFlight(
                    "the first request with this key is still in flight; retry shortly",
                    retry_after_seconds=1,
                )
            await asyncio.sleep(min(poll_seconds, deadline - now))
            poll_seconds = min(poll_seconds * 2, LAST_POLL_SECONDS)
            try:
                found = await self._claims.claim_or_read(record_key, claim, self._lease_ms)
            except CacheUnavailable:
                return _WaitEnded(WaitEnded.REDIS_DOWN)
            match decide(found, claim.fingerprint, self._replay_on_mismatch):
                case Create(taken_over):  # the original gave up (released) or its lease ran out
                    return _WaitEnded(WaitEnded.CLAIMED, taken_over=taken_over)
                case Reject():
                    raise FingerprintMismatch(MISMATCH_DETAIL)
                case Replay(done):
                    return _WaitEnded(WaitEnded.DONE, Answer(done.order_id, done.body, Outcome.WAITED))
                case Wait():
                    pass

    async def _create_in_postgres(
        self, profile: str, key: str, claim: InFlight, record_key: bytes,
        request: OrderRequest, *, degraded: bool = False,
    ) -> Answer:
        """Insert-or-get the order, then publish the answer over our claim."""
        owner = None if degraded else claim.owner
        try:
            order, created = await self._orders.insert_or_get(profile, key, claim.fingerprint, request)
        except BaseException:
            if owner is not None:  # let a retry start at once instead of after the lease
                await self._quietly(self._claims.release(record_key, owner))
            raise
        body = order.body()  # the bytes Redis keeps and every replay repeats
        await self._remember(record_key, owner, Done(order.fingerprint, order.order_id, body))
        if created:
            return Answer(order.order_id, body, Outcome.CREATED, degraded)
        if rejects(order.fingerprint, claim.fingerprint, self._replay_on_mismatch):
            raise FingerprintMismatch(MISMATCH_DETAIL)
        return Answer(order.order_id, body, Outcome.REPLAYED_POSTGRES, degraded)

    async def _stored_answer(self, profile: str, key: str, request_fingerprint: str) -> Answer | None:
        """The order PostgreSQL holds for the key, whatever Redis says, if there is one."""
        stored = await self._orders.find(profile, key)
        if stored is None:
            return None
        if rejects(stored.fingerprint, request_fingerprint, self._replay_on_mismatch):
            raise FingerprintMismatch(MISMATCH_DETAIL)
        return Answer(stored.order_id, stored.body(), Outcome.REPLAYED_POSTGRES)

    async def _reading_legacy(self) -> bool:
        """Whether a record of the previous version may still exist (Redis asked once per worker)."""
        now = asyncio.get_running_loop().time()
        if self._legacy_reads_until is None:
            try:
                left_ms = await self._claims.legacy_reads_left_ms(self._legacy_window_ms)
            except CacheUnavailable:
                return False  # asked again on the next miss
            self._legacy_reads_until = now + left_ms / 1000
        return now < self._legacy_reads_until

    async def _legacy_answer(self, profile: str, key: str, claim: InFlight, record_key: bytes) -> Done | None:
        """The answer the previous version left for this key, now also under our name
        (over the claim we just took). Its claim of a key in flight is not waited on here:
        PostgreSQL's unique constraint holds our insert until the original commits, and
        then answers with its order."""
        try:
            legacy: Record | None = await self._claims.read_legacy(legacy_key(profile, key))
        except CacheUnavailable:
            return None
        if not isinstance(legacy, Done):
            return None
        await self._remember(record_key, claim.owner, legacy)
        return legacy

    async def _remember(self, record_key: bytes, owner: str | None, done: Done) -> None:
        await self._quietly(self._claims.finish(record_key, owner, done, self._ttl_ms))

    @staticmethod
    async def _quietly(redis_write: Awaitable[None]) -> None:
        """Redis writes after the fact are an optimisation: losing one costs speed only."""
        try:
            await redis_write
        except CacheUnavailable:
            pass
