"""The idempotency record: its states, how Redis stores them, and the decision table.

Two states are stored: InFlight (a claim) and Done (the finished answer). "Expired" is
never stored or computed from a copy's clock: a claim is written with its lease as its
Redis expiry, so Redis's own clock removes it and the key reads as absent again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

KEY_PREFIX = "idem:v1:"


@dataclass(frozen=True)
class InFlight:
    fingerprint: str
    owner: str  # random owner token of the request that holds the claim


@dataclass(frozen=True)
class Done:
    fingerprint: str  # of the request that created the order
    order_id: str
    body: bytes  # the stored answer, replayed byte for byte


Record = InFlight | Done


@dataclass(frozen=True)
class Create:
    """Nothing was there: this request now holds the claim and writes the order."""


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


def decide(found: Record | None, fingerprint: str, replay_on_mismatch: bool) -> Action:
    """What a request does with the record its claim-or-read found.

    | found                      | same body   | different body, reject | different, replay |
    |----------------------------|-------------|------------------------|-------------------|
    | nothing (claimed it)       | Create      | Create                 | Create            |
    | InFlight (another request) | Wait        | Reject                 | Wait              |
    | Done                       | Replay      | Reject                 | Replay            |
    """
    if found is None:
        return Create()
    if found.fingerprint != fingerprint and not replay_on_mismatch:
        return Reject()
    return Replay(found) if isinstance(found, Done) else Wait()


def redis_key(profile: str, key: str) -> str:
    """Hashed, so a client's key never reaches Redis as a raw string (no `*`, no CRLF)."""
    digest = hashlib.sha256(f"{profile}\n{key}".encode()).hexdigest()
    return KEY_PREFIX + digest


def key_hash(profile: str, key: str | None) -> str | None:
    """The short form logs and spans use to name a key without revealing it."""
    return None if key is None else redis_key(profile, key)[len(KEY_PREFIX):][:16]


def encode(record: Record) -> str:
    if isinstance(record, InFlight):
        return json.dumps({"state": "in_flight", "fingerprint": record.fingerprint, "owner": record.owner})
    # The body is our own compact JSON: stored as text inside the record, not re-escaped bytes.
    return json.dumps(
        {"state": "done", "fingerprint": record.fingerprint, "orderId": record.order_id,
         "body": record.body.decode()}
    )


def decode(raw: bytes) -> Record:
    document = json.loads(raw)
    if document["state"] == "in_flight":
        return InFlight(document["fingerprint"], document["owner"])
    return Done(document["fingerprint"], document["orderId"], document["body"].encode())
