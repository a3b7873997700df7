"""Redis: claim a key, finish it with the answer, or release it, in one round trip each.

One `redis.asyncio` client per worker process, made on the loop that uses it. The calls
issued in one turn of the event loop (the requests a burst of reads started, the finishes
of one group-committed batch) are written as one pipeline: one write and one read of all
replies instead of one each (see `_Pipeline`); each call keeps its own timeout and failure
rule, and each is still one Lua script deciding inside Redis. A Sentinel
set (`redis+sentinel://`) is followed through failovers by redis-py itself; a demoted
primary's READONLY answer counts as "Redis unavailable", like a timeout. A Redis Cluster
(`redis+cluster://`, see redis_cluster.py) is followed likewise, through slot moves too.

Every write that depends on the record checks it inside Redis (a Lua script), never on a
value read in an earlier round trip: a copy whose lease ran out cannot overwrite or free
the claim another copy took since, and taking over an expired lease is decided by the
same script, on Redis's clock. Failures are counted here, by kind, once per call.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import TYPE_CHECKING, Any, Awaitable, cast

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from . import logs
from . import records
from . import metrics
from . import redis_cluster
from .labels import RedisFailure
from .records import Claimed, Done, InFlight, Record
from .targets import Keepalive, RedisTarget
from .tracing import redis_span

if TYPE_CHECKING:
    from .tracing import Tracing

CLAIMED, TAKEN_OVER = Claimed(), Claimed(taken_over=True)

# Shared head of every script: what a record is, read from its tag byte and length
# (records.py has the layout). A value we cannot read (not written by this version, or
# damaged) is nil: no Lua error, which would make every call for its key fail.
_READ_RECORD = """
local function state_of(raw)
  local tag = string.sub(raw, 1, 1)
  if tag == 'F' and string.len(raw) > 48 then return 'in_flight' end
  if (tag == 'Z' or tag == 'D') and string.len(raw) > 33 then return 'done' end
  return nil
end
local function owner_of(claim) return string.sub(claim, 49) end
"""
# KEYS[1] record; ARGV[1] our in-flight record; ARGV[2] lease in ms.
# Returns what was there (a finished answer, another request's live claim, or a value we
# cannot read); nil after writing our claim over nothing, or finding our own claim (this
# call sent again by the client library after a failover lost its reply: the first write
# had reached the replica); 1 after taking over a claim whose lease ran out. The lease
# is stamped in Redis's clock (TIME inside the script, so never a copy's clock), and the
# record is kept twice the lease: long enough for the next request to see that a lease
# expired, instead of finding nothing, and short enough that a dead claim nobody retries
# is gone by itself. A claim stamped with no lease (all nines) keeps the older rule: its
# Redis expiry is its lease.
CLAIM_OR_READ = _READ_RECORD + """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local current = redis.call('GET', KEYS[1])
local taken_over = false
if current then
  if state_of(current) ~= 'in_flight' then return current end
  if owner_of(current) == owner_of(ARGV[1]) then return false end
  local lease_until_ms = tonumber(string.sub(current, 2, 16))
  if lease_until_ms == nil or lease_until_ms > now_ms then return current end
  taken_over = true
end
local lease_ms = tonumber(ARGV[2])
local claim = 'F' .. string.format('%015.0f', now_ms + lease_ms) .. string.sub(ARGV[1], 17)
redis.call('SET', KEYS[1], claim, 'PX', 2 * lease_ms)
if taken_over then return 1 end
return false
"""
# KEYS[1] record; ARGV[1] owner token ('' for none); ARGV[2] done record; ARGV[3] TTL ms.
# Writes the answer over our own claim or over nothing (lease gone, Redis flushed: the
# answer comes from PostgreSQL, so it is the truth); leaves anyone else's record alone.
# A value we cannot read is no one's claim: the answer replaces it, which heals the key.
FINISH = _READ_RECORD + """
local current = redis.call('GET', KEYS[1])
if current then
  local state = state_of(current)
  if state == 'done' or (state == 'in_flight' and owner_of(current) ~= ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS[1] record; ARGV[1] owner token. Compare-and-delete: frees only our own claim.
RELEASE = _READ_RECORD + """
local current = redis.call('GET', KEYS[1])
if current and state_of(current) == 'in_flight' and owner_of(current) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS[1] a record the previous version wrote (`idem:v1:`): read only, never written.
READ = "return redis.call('GET', KEYS[1])"
# KEYS[1] LEGACY_WINDOW_KEY; ARGV[1] how long after the first copy of this version asked
# the previous version's records may still be found (ms). Returns the ms left, <= 0 when
# none can be. The first copy to ask sets the deadline, in Redis's clock, for every copy
# after it; no expiry, so a copy started after the deadline does not start a new window.
LEGACY_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local until_ms = tonumber(redis.call('GET', KEYS[1]))
if until_ms == nil then
  until_ms = now_ms + tonumber(ARGV[1])
  redis.call('SET', KEYS[1], string.format('%.0f', until_ms))
end
return until_ms - now_ms
"""
LEGACY_WINDOW_KEY = b"idem:v1-reads-until"  # outside idem:v2:*, which holds records only

# After a failure, skip Redis this long: a dead Redis then costs requests nothing, and
# the fast path comes back by itself once it answers again.
COOL_DOWN_SECONDS = 1.0

AsyncScript = redis.commands.core.AsyncScript
Client = redis.asyncio.Redis | redis.asyncio.RedisCluster
# What a Redis call may raise when Redis (or a cluster of it) did not answer usably.
REDIS_ERRORS = (redis.exceptions.RedisError, OSError, *redis_cluster.NOT_REDIS_ERRORS)  # TimeoutError is an OSError


class CacheUnavailable(Exception):
    """Redis did not answer usably; the caller goes on with PostgreSQL alone."""

    def __init__(self, kind: RedisFailure | None) -> None:
        super().__init__(kind or "cooling-down")
        self.kind = kind  # None: not asked, Redis is cooling down after a failure


class ClaimStore:
    tracing: Tracing | None  # read by the span on `_call` (tracing.Traced)

    def __init__(
        self, target: RedisTarget, *, timeout_seconds: float, tracing: Tracing | None = None,
        keepalive: Keepalive | None = None,
    ) -> None:
        options: dict[str, Any] = {
            # No socket_timeout: redis-py runs every write under asyncio.wait_for, a new
            # task per command. `_call` bounds the whole call with one asyncio.timeout.
            "socket_timeout": None,
            "socket_connect_timeout": timeout_seconds,
            # A dropped connection (Redis restarted, a failover) is retried once on a
            # fresh one; a timeout never is: that would multiply the wait on a hung Redis.
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            "health_check_interval": 30,
            **(keepalive.redis_options() if keepalive is not None else {}),  # an idle peer that vanished
        }
        self._client: Client
        if target.cluster is not None:
            self._client = redis_cluster.cluster_client(target.cluster, options)
        elif target.sentinels is None:
            self._client = redis.asyncio.Redis.from_url(target.url, **options)
        else:
            sentinels = target.sentinels
            self._sentinel = Sentinel(
                list(sentinels.addresses),
                sentinel_kwargs={"socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds},
                password=sentinels.password, db=sentinels.db, **options,
            )
            self._client = self._sentinel.master_for(sentinels.service_name)
        scripts = cast(redis.asyncio.Redis, self._client)  # redis-py types the method for Redis; RedisCluster has it too
        self._claim_or_read = scripts.register_script(CLAIM_OR_READ)
        self._finish = scripts.register_script(FINISH)
        self._release = scripts.register_script(RELEASE)
        self._read = scripts.register_script(READ)
        self._legacy_window = scripts.register_script(LEGACY_WINDOW)
        self._timeout_seconds = timeout_seconds
        # One loop turn's calls in one pipeline: kept because it paid, measured
        # (docs/group-commit.md, "Fewer Redis round trips").
        self._pipeline = _Pipeline(self._client, timeout_seconds)
        self._down_until = 0.0
        self.tracing = tracing  # None: tracing off, and the span on `_call` costs one attribute read

    async def claim_or_read(self, key: bytes, claim: InFlight, lease_ms: int) -> Record | Claimed:
        """Claimed when this call took the claim (`taken_over` if a lease had run out);
        else the record another request left."""
        raw = await self._call("claim-or-read", self._claim_or_read, key, records.encode(claim), lease_ms)
        if raw is None:
            return CLAIMED
        if raw == 1:
            return TAKEN_OVER
        try:
            return records.decode(raw)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not ours: trust PostgreSQL
            metrics.REDIS_FAILED[RedisFailure.UNREADABLE_RECORD].inc()
            raise CacheUnavailable(RedisFailure.UNREADABLE_RECORD) from exc

    async def finish(self, key: bytes, owner: str | None, done: Done, ttl_ms: int) -> None:
        await self._call("finish", self._finish, key, owner or "", records.encode(done), ttl_ms)

    async def release(self, key: bytes, owner: str) -> None:
        await self._call("release", self._release, key, owner)

    async def read_legacy(self, key: str) -> Record | None:
        """The record the previous version keeps under `key`, if there is one it wrote."""
        raw = await self._call("read-legacy", self._read, key)
        try:
            return None if raw is None else records.decode_legacy(raw)
        except (ValueError, KeyError, TypeError, AttributeError):  # not its either: PostgreSQL decides
            return None

    async def legacy_reads_left_ms(self, window_ms: int) -> int:
        """How much longer the previous version's records may be found (<= 0: never again)."""
        return int(await self._call("legacy-window", self._legacy_window, LEGACY_WINDOW_KEY, window_ms))

    async def ping(self) -> bool:
        """For /healthz: asks Redis even while cooling down."""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                if isinstance(self._client, redis.asyncio.RedisCluster):
                    # Every primary, so a primary that is gone (not yet replaced) shows;
                    # a replica down alone leaves every key served.
                    await self._client.ping(target_nodes=redis.asyncio.RedisCluster.PRIMARIES)  # type: ignore[misc]
                else:
                    await self._client.ping()  # type: ignore[misc]  # redis-py 7.1 types it sync-or-async
        except REDIS_ERRORS:
            return False
        except Exception as exc:  # see _call: the client's own failure, never a 500
            _unexpected(exc)
            return False
        self._down_until = 0.0
        return True

    @property
    def cooling_down(self) -> bool:
        return time.monotonic() < self._down_until

    @redis_span
    async def _call(self, operation: str, script: AsyncScript, key: bytes | str, *args: bytes | str | int) -> Any:
        if self.cooling_down:  # skipped: neither a failure to count nor (when tracing) a span
            raise CacheUnavailable(None)
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await self._pipeline.call(script, key, args)
        except REDIS_ERRORS as exc:
            self._down_until = time.monotonic() + COOL_DOWN_SECONDS
            kind = failure_kind(exc)
            metrics.REDIS_FAILED[kind].inc()
            if kind is RedisFailure.READONLY:
                await self._drop_connections()
            raise CacheUnavailable(kind) from exc
        except Exception as exc:
            # Redis is a cache: whatever else its client raises, PostgreSQL decides.
            self._down_until = time.monotonic() + COOL_DOWN_SECONDS
            metrics.REDIS_FAILED[RedisFailure.OTHER].inc()
            _unexpected(exc)
            raise CacheUnavailable(RedisFailure.OTHER) from exc

    async def _drop_connections(self) -> None:
        """A READONLY answer comes from a demoted primary that still holds our pooled
        connections, and answers their health checks: left alone, the copy would stay on
        it for good. Dropped, the next call connects afresh, through the sentinels to
        the new primary. (redis-py drops them itself only for a READONLY outside a
        script, which Redis < 7 never sends for a write inside one.)"""
        try:
            if isinstance(self._client, redis.asyncio.RedisCluster):
                await self._client.aclose()  # every node's connections; the slot map is read again
            else:
                await self._client.connection_pool.disconnect()
        except REDIS_ERRORS:
            pass


class _Pipeline:
    """Script calls issued in one loop turn, sent together once the turn's callbacks ran.

    A caller awaits its own future, under its own timeout: giving up cancels that future
    only. The pipeline is its own task, bounded by the same timeout; a failure of it fails
    each call in it, and each call counts and cools down as it would have alone. A lone
    call is sent as before (EVALSHA, loading the script if Redis lost it); in a pipeline a
    script Redis lost is sent again alone, which loads it.

    A call made while no other is in flight goes straight out from its caller's task
    (no batch task, no future, no second timeout): there is nothing to batch it with,
    and at low load that is every call. Calls made while one is in flight wait for the
    turn's end and go out together, as above."""

    def __init__(self, client: Client, timeout_seconds: float) -> None:
        self._client = client
        self._timeout_seconds = timeout_seconds
        self._queued: list[tuple[AsyncScript, bytes | str, tuple[bytes | str | int, ...], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._alone = 0  # calls gone out straight from their caller, not yet answered

    def call(self, script: AsyncScript, key: bytes | str, args: tuple[bytes | str | int, ...]) -> Awaitable[Any]:
        if not self._alone and not self._queued and not self._tasks:
            return self._call_alone(script, key, args)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if not self._queued:  # the first call of this turn: send after the turn's callbacks
            loop.call_soon(self._send)
        self._queued.append((script, key, args, answer))
        return answer

    async def _call_alone(self, script: AsyncScript, key: bytes | str, args: tuple[bytes | str | int, ...]) -> Any:
        """EVALSHA (loading the script if Redis lost it), in the caller's task and under
        its timeout: a call given up is cancelled, which makes redis-py drop its connection."""
        self._alone += 1
        try:
            return await script(keys=[key], args=list(args))
        finally:
            self._alone -= 1

    def _send(self) -> None:
        queued, self._queued = self._queued, []
        queued = [call for call in queued if not call[3].done()]  # callers that gave up already
        if queued:
            task = asyncio.get_running_loop().create_task(self._execute(queued), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, queued: list[tuple[AsyncScript, bytes | str, tuple[bytes | str | int, ...], asyncio.Future[Any]]]) -> None:
        if len(queued) == 1:
            script, key, args, answer = queued[0]
            await _settle(answer, script(keys=[key], args=list(args)), self._timeout_seconds)
            return
        pipe = self._client.pipeline(transaction=False)
        for script, key, args, _ in queued:
            # Not `pipe.evalsha`: redis-py 7.1's cluster pipeline refuses that method
            # (#2914, lifted upstream by #4206 after 7.1), yet queues the same command
            # given raw, routes it by its key and sends one pipeline per primary.
            pipe.execute_command("EVALSHA", script.sha, 1, key, *args)
        try:
            async with asyncio.timeout(self._timeout_seconds):
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for *_, answer in queued:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (script, key, args, answer), reply in zip(queued, replies):
            if isinstance(reply, redis.exceptions.NoScriptError):  # Redis restarted: load it
                await _settle(answer, script(keys=[key], args=list(args)), self._timeout_seconds)
            elif isinstance(reply, Exception):
                if not answer.done():
                    answer.set_exception(reply)
            elif not answer.done():
                answer.set_result(reply)


async def _settle(answer: asyncio.Future[Any], call: Awaitable[Any], timeout_seconds: float) -> None:
    """`call`'s reply or error into `answer`. Bounded like the caller's own wait: a call
    on a hung Redis is cancelled, which makes redis-py drop its connection."""
    try:
        async with asyncio.timeout(timeout_seconds):
            reply = await call
    except Exception as exc:
        if not answer.done():
            answer.set_exception(exc)
        return
    if not answer.done():
        answer.set_result(reply)


def _unexpected(exc: Exception) -> None:
    """An exception no Redis failure kind names: the client library's own, or a bug on
    our side of the call (a replay answered 500 once in the cluster soak, cause not
    found). Counted as `other` and logged with its type (never its text, which may name
    the server), so it is found and fixed, not answered as a 500."""
    logs.warning("Redis client failed unexpectedly; PostgreSQL decides",
                 error=f"{type(exc).__module__}.{type(exc).__qualname__}")


def failure_kind(exc: BaseException) -> RedisFailure:
    cluster_kind = redis_cluster.failure_kind(exc)
    if cluster_kind is not None:
        return cluster_kind
    if isinstance(exc, redis.exceptions.ReadOnlyError) or _readonly_inside_a_script(exc):
        return RedisFailure.READONLY
    if isinstance(exc, (redis.exceptions.TimeoutError, TimeoutError)):
        return RedisFailure.TIMEOUT
    if isinstance(exc, (redis.exceptions.ConnectionError, OSError)):
        return RedisFailure.CONNECTION
    return RedisFailure.OTHER


def _readonly_inside_a_script(exc: BaseException) -> bool:
    """Redis < 7 answers a script's write on a replica with "ERR Error running script
    ... -READONLY You can't write against a read only replica": a plain ResponseError."""
    return isinstance(exc, redis.exceptions.ResponseError) and "-READONLY " in str(exc)
