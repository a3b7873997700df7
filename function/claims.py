"""Redis: claim a key, finish it with the answer, or release it, in one round trip each.

One `redis.asyncio` client per worker process, made on the loop that uses it. A Sentinel
set (`redis+sentinel://`) is followed through failovers by redis-py itself; a demoted
primary's READONLY answer counts as "Redis unavailable", like a timeout.

Every write that depends on the record checks it inside Redis (a Lua script), never on a
value read in an earlier round trip: a copy whose lease ran out cannot overwrite or free
the claim another copy took since.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.asyncio.retry import Retry

from . import records
from .records import Done, InFlight, Record
from .targets import RedisTarget

# KEYS[1] record; ARGV[1] in-flight record; ARGV[2] lease in ms. Returns what was there,
# or nil after writing the claim.
CLAIM_OR_READ = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# KEYS[1] record; ARGV[1] owner token ('' for none); ARGV[2] done record; ARGV[3] TTL ms.
# Writes the answer over our own claim or over nothing (lease gone, Redis flushed: the
# answer comes from PostgreSQL, so it is the truth); leaves anyone else's record alone.
FINISH = """
local current = redis.call('GET', KEYS[1])
if current then
  local record = cjson.decode(current)
  if record.state ~= 'in_flight' or record.owner ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS[1] record; ARGV[1] owner token. Compare-and-delete: frees only our own claim.
RELEASE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local record = cjson.decode(current)
if record.state == 'in_flight' and record.owner == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# After a failure, skip Redis this long: a dead Redis then costs requests nothing, and
# the fast path comes back by itself once it answers again.
COOL_DOWN_SECONDS = 1.0


class CacheUnavailable(Exception):
    """Redis did not answer usably; the caller goes on with PostgreSQL alone."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # timeout, connection, readonly, unreadable-record, other, cooling-down


class ClaimStore:
    def __init__(self, target: RedisTarget, *, timeout_seconds: float) -> None:
        options: dict[str, Any] = {
            # No socket_timeout: redis-py runs every write under asyncio.wait_for, a new
            # task per command. `_call` bounds the whole call with one asyncio.timeout.
            "socket_timeout": None,
            "socket_connect_timeout": timeout_seconds,
            # A dropped connection (Redis restarted, a failover) is retried once on a
            # fresh one; a timeout never is: that would multiply the wait on a hung Redis.
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            "health_check_interval": 30,
        }
        self._client: redis.asyncio.Redis
        if target.sentinels is None:
            self._client = redis.asyncio.Redis.from_url(target.url, **options)
        else:
            sentinels = target.sentinels
            self._sentinel = Sentinel(
                list(sentinels.addresses),
                sentinel_kwargs={"socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds},
                password=sentinels.password, db=sentinels.db, **options,
            )
            self._client = self._sentinel.master_for(sentinels.service_name)
        self._claim_or_read = self._client.register_script(CLAIM_OR_READ)
        self._finish = self._client.register_script(FINISH)
        self._release = self._client.register_script(RELEASE)
        self._timeout_seconds = timeout_seconds
        self._down_until = 0.0

    async def claim_or_read(self, key: str, claim: InFlight, lease_ms: int) -> Record | None:
        """None when this call took the claim; else the record another request left."""
        raw = await self._call(self._claim_or_read, key, records.encode(claim), lease_ms)
        if raw is None:
            return None
        try:
            return records.decode(raw)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not ours: trust PostgreSQL
            raise CacheUnavailable("unreadable-record") from exc

    async def finish(self, key: str, owner: str | None, done: Done, ttl_ms: int) -> None:
        await self._call(self._finish, key, owner or "", records.encode(done), ttl_ms)

    async def release(self, key: str, owner: str) -> None:
        await self._call(self._release, key, owner)

    async def ping(self) -> bool:
        """For /healthz: asks Redis even while cooling down."""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                await self._client.ping()
        except (redis.exceptions.RedisError, OSError):  # TimeoutError is an OSError
            return False
        self._down_until = 0.0
        return True

    @property
    def cooling_down(self) -> bool:
        return time.monotonic() < self._down_until

    async def _call(self, script: redis.commands.core.AsyncScript, key: str, *args: str | int) -> bytes | None:
        if self.cooling_down:
            raise CacheUnavailable("cooling-down")
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await script(keys=[key], args=list(args))
        except (redis.exceptions.RedisError, OSError) as exc:  # TimeoutError is an OSError
            self._down_until = time.monotonic() + COOL_DOWN_SECONDS
            raise CacheUnavailable(failure_kind(exc)) from exc


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "readonly"
    if isinstance(exc, (redis.exceptions.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, (redis.exceptions.ConnectionError, OSError)):
        return "connection"
    return "other"
