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
from dataclasses import dataclass

KEY_PREFIX = "idem:v1:"


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
def redis_key(profile: str, key: str) -> str:
    """Hashed, so a client's key never reaches Redis as a raw string (no `*`, no CRLF)."""
    digest = hashlib.sha256(f"{profile}\n{key}".encode()).hexdigest()
    return KEY_PREFIX + digest


def key_hash(profile: str, key: str | None) -> str | None:
    """The short form logs and spans use to name a key without revealing it."""
    return None if key is None else redis_key(profile, key)[len(KEY_PREFIX):][:16]


def encode(record: Record) -> str:
    if isinstance(record, InFlight):
        claim: dict[str, object] = {"state": "in_flight", "fingerprint": record.fingerprint, "owner": record.owner}
        if record.lease_until_ms is not None:  # else the script stamps it
            claim["lease_until_ms"] = record.lease_until_ms
        return json.dumps(claim)
    # The body is our own compact JSON: stored as text inside the record, not re-escaped bytes.
    return json.dumps(
        {"state": "done", "fingerprint": record.fingerprint, "orderId": record.order_id,
         "body": record.body.decode()}
    )


def decode(raw: bytes) -> Record:
    document = json.loads(raw)
    if document["state"] == "in_flight":
        lease_until = document.get("lease_until_ms")
        return InFlight(document["fingerprint"], document["owner"], None if lease_until is None else int(lease_until))
    return Done(document["fingerprint"], document["orderId"], document["body"].encode())
