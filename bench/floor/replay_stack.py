"""The replay-shaped floor: what a replay cannot do without, on the function's own stack.

A `functions_framework.aio.http` function served by `functions-framework --asgi`, like
the ASGI floor, that does a replay's unavoidable work and nothing else: read the body,
parse it, fingerprint it (canonical JSON, sha256), make one EVALSHA on a key hashed from
profile and key (a script that returns the stored answer, storing one first if the key
is new), and answer 201 with the stored bytes. No validation, log line, metrics or
claim: the function's replay over this floor is the price of those, with Redis and the
stack cancelled out. One `redis.asyncio` client per worker, made on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import redis.asyncio
from functions_framework import aio
from starlette.requests import Request
from starlette.responses import Response

STORED = b'{"orderId":"00000000-0000-0000-0000-000000000000","profileId":"bench","orderNumber":1,' \
         b'"productId":"sku-bench","productQuantity":1,"createdAt":"2026-12-07T00:00:00.000000Z"}'
# KEYS[1] the record; ARGV[1] the answer to keep if there is none yet.
GET_OR_KEEP = """
local stored = redis.call('GET', KEYS[1])
if stored then return stored end
redis.call('SET', KEYS[1], ARGV[1], 'PX', 600000)
return ARGV[1]
"""
_script: Any = None


def _get_or_keep() -> Any:
    global _script
    if _script is None:
        client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
        _script = client.register_script(GET_OR_KEEP)
    return _script


@aio.http
async def handle(request: Request) -> Response:
    if request.method != "POST":  # /metrics and the like: a floor exposes nothing
        return Response(b"", 404)
    document = json.loads(await request.body())
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    fingerprint = hashlib.sha256(canonical).hexdigest()
    headers = request.headers
    key = hashlib.sha256(f"{headers.get('x-profile-id')}\n{headers.get('idempotency-key')}".encode()).digest()
    stored = await _get_or_keep()(keys=[b"floor:" + key[:20]], args=[fingerprint.encode() + STORED])
    return Response(stored[64:], 201, media_type="application/json")
