"""Client input turned into values, or into the Problem that says what is wrong.

Pure functions over strings and bytes: the HTTP and CloudEvent entry points share them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from .problems import (
    InvalidBody,
    InvalidIdempotencyKey,
    InvalidOrderId,
    InvalidParameter,
    InvalidProfile,
    Problem,
)

MAX_KEY_LENGTH = 255
MAX_QUANTITY = 10_000
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
PROFILE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
PRODUCT_ID_MAX_LENGTH = 64
MAX_ORDER_NUMBER = 2**63 - 1  # order_number is a PostgreSQL bigint
# Text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (a lone surrogate, which a
# JSON \u escape can spell): refused as input rather than failing at the INSERT.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_BARE_KEY = re.compile(r"[\x21-\x7e]+")
# RFC 8941 sf-string: printable ASCII, with only \" and \\ as escapes.
_QUOTED_KEY = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')


@dataclass(frozen=True)
class OrderRequest:
    """What a client asks for; its canonical form is what the fingerprint covers."""

    product_quantity: int
    product_id: str | None = None

    def canonical(self) -> dict[str, Any]:
        return {"productId": self.product_id, "productQuantity": self.product_quantity}


def parse_idempotency_key(raw: str, *, name: str = "Idempotency-Key") -> str:
    """`abc` and the RFC 8941 string form `"abc"` name the same key. `name` says where
    the key came from (the header, or an event's attribute) in the problem's detail."""
    value = raw.strip(" \t")
    if value.startswith('"'):
        match = _QUOTED_KEY.fullmatch(value)
        if match is None:
            raise InvalidIdempotencyKey(f"{name} starts with a quote but is not a valid RFC 8941 string")
        value = re.sub(r"\\(.)", r"\1", match.group(1))
    elif not value or not _BARE_KEY.fullmatch(value):
        raise InvalidIdempotencyKey(f"{name} must be 1-{MAX_KEY_LENGTH} visible ASCII characters")
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"{name} must be 1-{MAX_KEY_LENGTH} characters long")
    return value


def parse_profile(header: str | None, query: str | None) -> str:
    """The profile from the gateway's header or the query."""
    return profile_from_either(header, query, ("the X-Profile-Id header", "the profileId query"))


def profile_from_either(
    first: Any, second: Any, names: tuple[str, str], missing: type[Problem] = InvalidProfile,
) -> str:
    """The one rule for a profile a request may name in two places (a header and the
    query; an event's data and its attribute): either will do, both must agree."""
    if first is not None and second is not None and first != second:
        raise InvalidProfile(f"{names[0]} and {names[1]} name different profiles")
    profile = first if first is not None else second
    if profile is None:
        raise missing(f"a profile is required: {names[0]} or {names[1]}")
    return check_profile(profile)


def check_profile(profile: Any) -> str:
    if not isinstance(profile, str) or not PROFILE_PATTERN.fullmatch(profile):
        raise InvalidProfile("a profile id is 1-64 characters of A-Z a-z 0-9 . _ : -")
    return profile


def decode_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN, no duplicate names, bounded nesting."""
    try:
        return _STRICT.decode(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidBody("the body is not UTF-8") from None
    except RecursionError:
        raise InvalidBody("the body nests too deeply") from None
    except ValueError as exc:
        raise InvalidBody(f"the body is not valid JSON: {_json_reason(exc)}") from None


def order_request_from(document: Any, *, allowed_extra: frozenset[str] = frozenset()) -> OrderRequest:
    """Validate an order body, naming every field at fault at once."""
    if not isinstance(document, dict):
        raise InvalidBody("the body must be a JSON object")
    errors: list[dict[str, str]] = []
    for name in sorted(set(document) - {"productQuantity", "productId"} - allowed_extra):
        errors.append({"field": name[:64], "message": "unknown field"})
    quantity = document.get("productQuantity")
    if "productQuantity" not in document:
        errors.append({"field": "productQuantity", "message": "is required"})
    elif type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        errors.append(
            {"field": "productQuantity", "message": f"must be an integer from 1 to {MAX_QUANTITY}"}
        )
    product_id = document.get("productId")
    if product_id is not None and (
        not isinstance(product_id, str) or not 1 <= len(product_id) <= PRODUCT_ID_MAX_LENGTH
        or _UNSTORABLE_TEXT.search(product_id)
    ):
        errors.append(
            {"field": "productId",
             "message": f"must be a string of 1-{PRODUCT_ID_MAX_LENGTH} characters, without NUL"}
        )
    if errors:
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        raise InvalidBody(f"invalid fields: {fields}", errors=errors)
    assert isinstance(quantity, int)  # checked above; tells the type checker too
    return OrderRequest(product_quantity=quantity, product_id=product_id)


def parse_order_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        # Malformed is a 400 by contract; only a well-formed id can be "not found".
        raise InvalidOrderId("an order id is a UUID, e.g. 3f2b8c1e-5d4a-4f7b-9c1d-2e6f8a9b0c3d") from None


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidParameter(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def encode_cursor(order_number: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{order_number}".encode()).decode().rstrip("=")


def parse_cursor(raw: str | None) -> int | None:
    """The order number to continue below; opaque to clients so it can change later."""
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        version, number = text.split(":")
        if version != "v1" or not number.isdigit() or int(number) > MAX_ORDER_NUMBER:
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter("cursor is not one this API returned") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise ValueError(f"duplicate member {name[:64]!r}")
        document[name] = value
    return document


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_reason(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


# Made once: json.loads with options builds a decoder per call (a replay's body is parsed
# in about half the time with this one).
_STRICT = json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
