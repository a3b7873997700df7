"""The idempotency record: its states, how Redis stores them, and the decision table.

Two states are stored: InFlight (a claim) and Done (the finished answer). "Expired" is
derived, never stored, and only ever by Redis's clock: the claim-or-read script stamps a
claim with `lease_until_ms` from Redis's TIME and keeps the record for twice the lease,
so a later claim-or-read (the same script, the same clock) sees the lease ran out and
takes the claim over atomically, and says so, which is how takeovers get counted.
No copy compares a lease with its own clock.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from dataclasses import dataclass

# The previous version kept `idem:v1:<64 hex>` with a JSON value. A new prefix: a copy of
# that version never meets a record it cannot read (it misses, and PostgreSQL answers), and
# this one reads its records on a miss while they may still exist (idempotency.py).
KEY_PREFIX = b"idem:v2:"
KEY_DIGEST_BYTES = 20
LEGACY_KEY_PREFIX = "idem:v1:"


@dataclass(frozen=True)
class InFlight:
    fingerprint: str
    owner: str  # random owner token of the request that holds the claim
    # Stamped by the claim-or-read script in Redis's clock (ms since the epoch); None for
    # a claim not yet written, or one written by an older copy (its Redis expiry is its lease).
    lease_until_ms: int | None = None


@dataclass(frozen=True)
class Done:
    fingerprint: str  # of the request that created the order
    order_id: str
    body: bytes  # the stored answer, replayed byte for byte


Record = InFlight | Done


@dataclass(frozen=True)
class Claimed:
    """What claim-or-read returns when this request took the claim: over nothing, or
    (`taken_over`) over an in-flight claim whose lease had run out."""

    taken_over: bool = False


@dataclass(frozen=True)
class Create:
    """This request now holds the claim and writes the order."""

    taken_over: bool = False  # the claim was another request's, whose lease ran out


@dataclass(frozen=True)
class Replay:
    done: Done


@dataclass(frozen=True)
class Wait:
    """Another request holds the claim: wait for its answer."""


@dataclass(frozen=True)
class Reject:
    """Same key, different body, under IDEMPOTENCY_ON_MISMATCH=reject."""


Action = Create | Replay | Wait | Reject


def decide(found: Record | Claimed, fingerprint: str, replay_on_mismatch: bool) -> Action:
    """What a request does with what its claim-or-read found.

    | found                              | same body | different body, reject | different, replay |
    |------------------------------------|-----------|------------------------|-------------------|
    | Claimed (nothing, or lease ran out)| Create    | Create                 | Create            |
    | InFlight (another request's lease) | Wait      | Reject                 | Wait              |
    | Done                               | Replay    | Reject                 | Replay            |

    An expired lease never reaches this table: the script that saw it took the claim.
    """
    if isinstance(found, Claimed):
        return Create(found.taken_over)
    if rejects(found.fingerprint, fingerprint, replay_on_mismatch):
        return Reject()
    return Replay(found) if isinstance(found, Done) else Wait()


def rejects(stored: str, sent: str, replay_on_mismatch: bool) -> bool:
    """The fingerprint rule, for a Redis record and a PostgreSQL row alike: the same key
    with a different body is refused (422), unless IDEMPOTENCY_ON_MISMATCH=replay."""
    return stored != sent and not replay_on_mismatch


@functools.lru_cache(maxsize=4096)  # a request asks twice (log line, claim); replays and storms repeat keys
def _digest(profile: str, key: str) -> bytes:
    return hashlib.sha256(f"{profile}\n{key}".encode()).digest()


def redis_key(profile: str, key: str) -> bytes:
    """Hashed, so a client's key never reaches Redis as a raw string (no `*`, no CRLF);
    160 raw bits of the digest: a key name of 28 bytes, not 72."""
    return KEY_PREFIX + _digest(profile, key)[:KEY_DIGEST_BYTES]


def legacy_key(profile: str, key: str) -> str:
    """Where the previous version (`idem:v1:`, hex) keeps the same key's record."""
    return LEGACY_KEY_PREFIX + _digest(profile, key).hex()


def key_hash(profile: str, key: str | None) -> str | None:
    """The short form logs and spans use to name a key without revealing it (the first
    16 hex digits of the digest, as in every version)."""
    return None if key is None else _digest(profile, key)[:8].hex()


# A record is one Redis string, tag byte first, so the Lua scripts read it with
# string.sub and no decoding:
#   in flight  b"F" + lease_until_ms (15 ASCII digits) + fingerprint (32 raw bytes) + owner
#   done       b"Z" + fingerprint (32 raw bytes) + the answer, raw-deflated against ANSWER_SHAPE
#              b"D" + fingerprint (32 raw bytes) + the answer as it is (when deflating does not help)
# The order id is read from the answer, not stored twice. A lease of all nines is "no
# stamp": Redis's expiry is the lease (a claim written without one, as older copies did).
IN_FLIGHT, DONE_DEFLATED, DONE_PLAIN = b"F", b"Z", b"D"
LEASE_DIGITS = 15
NO_LEASE = b"9" * LEASE_DIGITS
FINGERPRINT_BYTES = 32
_FINGERPRINT_AT = 1 + LEASE_DIGITS  # in a claim; in an answer it follows the tag
# What a compressed answer is deflated against: the answer's shape, so the field names
# and the fixed parts cost a few bits each. Changing it makes records unreadable: a new
# shape needs a new tag byte (the old one still decoded).
ANSWER_SHAPE = (b'{"orderId":"00000000-0000-0000-0000-000000000000","profileId":"","orderNumber":1,'
                b'"productId":null,"productId":"","productQuantity":1,"createdAt":"2026-12-07T00:00:00.000000Z"}')
_WINDOW_BITS = -9  # raw deflate (no header, no checksum), a 512-byte window: answers are small
_ORDER_ID = b'"orderId":"'


def encode(record: Record) -> bytes:
    if isinstance(record, InFlight):
        lease = NO_LEASE if record.lease_until_ms is None else b"%015d" % record.lease_until_ms
        return IN_FLIGHT + lease + bytes.fromhex(record.fingerprint) + record.owner.encode()
    deflate = zlib.compressobj(9, zlib.DEFLATED, _WINDOW_BITS, 1, zlib.Z_DEFAULT_STRATEGY, ANSWER_SHAPE)
    deflated = deflate.compress(record.body) + deflate.flush()
    fingerprint = bytes.fromhex(record.fingerprint)
    if len(deflated) < len(record.body):
        return DONE_DEFLATED + fingerprint + deflated
    return DONE_PLAIN + fingerprint + record.body


def decode(raw: bytes) -> Record:
    """ValueError for anything this version did not write (the caller trusts PostgreSQL)."""
    tag = raw[:1]
    if tag == IN_FLIGHT and len(raw) > _FINGERPRINT_AT + FINGERPRINT_BYTES:
        lease = raw[1:_FINGERPRINT_AT]
        owner_at = _FINGERPRINT_AT + FINGERPRINT_BYTES
        return InFlight(raw[_FINGERPRINT_AT:owner_at].hex(), raw[owner_at:].decode(),
                        None if lease == NO_LEASE else int(lease))
    if tag in (DONE_DEFLATED, DONE_PLAIN) and len(raw) > 1 + FINGERPRINT_BYTES:
        return _decode_done(raw)
    raise ValueError("not a record this version writes")


@functools.lru_cache(maxsize=1024)  # the same bytes, the same answer: a storm's replays inflate it once
def _decode_done(raw: bytes) -> Done:
    body = raw[1 + FINGERPRINT_BYTES:]
    if raw[:1] == DONE_DEFLATED:
        inflate = zlib.decompressobj(_WINDOW_BITS, ANSWER_SHAPE)
        try:
            body = inflate.decompress(body)
        except zlib.error as exc:
            raise ValueError("damaged answer") from exc
        if not inflate.eof or inflate.unused_data:
            raise ValueError("damaged answer")
    return Done(raw[1:1 + FINGERPRINT_BYTES].hex(), _order_id_in(body), body)


def _order_id_in(body: bytes) -> str:
    at = body.find(_ORDER_ID)
    if at < 0:
        raise ValueError("an answer without an orderId")
    start = at + len(_ORDER_ID)
    return body[start:body.index(b'"', start)].decode()


def decode_legacy(raw: bytes) -> Record:
    """A record the previous version wrote (`idem:v1:`, JSON), read during a rolling update."""
    document = json.loads(raw)
    if document["state"] == "in_flight":
        lease_until = document.get("lease_until_ms")
        return InFlight(document["fingerprint"], document["owner"], None if lease_until is None else int(lease_until))
    return Done(document["fingerprint"], document["orderId"], document["body"].encode())
