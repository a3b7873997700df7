"""The request fingerprint: what "the same body" means for an idempotency key.

Two bodies are the same when they are the same JSON value, so the hash is taken over
canonical JSON (sorted keys, no whitespace, UTF-8), never over the bytes received.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


# Made once: json.dumps with options builds an encoder per call (twice the time).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def canonical_json(value: Any) -> bytes:
    return _CANONICAL(value).encode()


def fingerprint(value: Any) -> str:
    """A short, stable hash of a JSON value; stored beside the key, compared on replay."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
