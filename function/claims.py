"""Redis: claim a key, finish it with the answer, or release it, in one round trip each.

Every write that depends on the record checks it inside Redis (a Lua script), never on a
value read in an earlier round trip: a copy whose lease ran out cannot overwrite or free
the claim another copy took since.
"""

from __future__ import annotations

import threading
import time

import redis

from . import records
from .records import Done, InFlight, Record

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
    """Redis did not answer; the caller goes on with PostgreSQL alone."""


class ClaimStore:
    def __init__(self, url: str, *, timeout_seconds: float) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            # One attempt: a retry would multiply the time a request waits for a dead Redis.
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
            health_check_interval=30,
        )
        self._claim_or_read = self._client.register_script(CLAIM_OR_READ)
        self._finish = self._client.register_script(FINISH)
        self._release = self._client.register_script(RELEASE)
        self._down_until = 0.0
        self._lock = threading.Lock()

    def claim_or_read(self, key: str, claim: InFlight, lease_ms: int) -> Record | None:
        """None when this call took the claim; else the record another request left."""
        raw = self._call(self._claim_or_read, key, records.encode(claim), lease_ms)
        if raw is None:
            return None
        try:
            return records.decode(raw)
        except (ValueError, KeyError) as exc:  # not written by us: trust PostgreSQL instead
            raise CacheUnavailable("unreadable record") from exc

    def finish(self, key: str, owner: str | None, done: Done, ttl_ms: int) -> None:
        self._call(self._finish, key, owner or "", records.encode(done), ttl_ms)

    def release(self, key: str, owner: str) -> None:
        self._call(self._release, key, owner)

    def ping(self) -> bool:
        """For /healthz: asks Redis even while cooling down."""
        try:
            self._client.ping()
        except redis.RedisError:
            return False
        self._down_until = 0.0
        return True

    @property
    def cooling_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _call(self, script: redis.commands.core.Script, key: str, *args: str | int) -> bytes | None:
        if self.cooling_down:
            raise CacheUnavailable("cooling down after a failure")
        try:
            return script(keys=[key], args=list(args))
        except redis.RedisError as exc:
            with self._lock:
                self._down_until = time.monotonic() + COOL_DOWN_SECONDS
            raise CacheUnavailable(type(exc).__name__) from exc
