"""The HTTP routes: parse the request, make one call, render the answer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from . import auth, metrics
from .database import DatabaseUnavailable
from .idempotency import Answer
from .inputs import (
    decode_json,
    encode_cursor,
    order_request_from,
    parse_cursor,
    parse_idempotency_key,
    parse_limit,
    parse_order_id,
)
from .outcomes import Outcome
from .problems import (
    BodyTooLarge,
    IncompleteBody,
    InvalidBody,
    InvalidIdempotencyKey,
    InvalidProfile,
    MissingIdempotencyKey,
    NotFound,
    Problem,
    Unauthenticated,
    UnsupportedMediaType,
)
from .records import key_hash
from .service import Service

MAX_BODY_BYTES = 64 * 1024
OPENAPI_DOCUMENT = (Path(__file__).resolve().parent / "openapi.json").read_bytes()  # kept true by tests
JSON = "application/json"
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}")


class Head:
    """The request's headers, read once into a dict: a route looks up several, and each
    lookup in Starlette's `Headers` scans the whole list again (the profile showed it)."""

    __slots__ = ("_values",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        values: dict[str, list[str]] = {}
        for name, value in raw:  # ASGI header names are lower-case already
            values.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        self._values = values

    def get(self, name: str, default: str | None = None) -> str | None:
        found = self._values.get(name)
        return found[0] if found else default

    def all(self, name: str) -> list[str]:
        return self._values.get(name, [])

    def __contains__(self, name: str) -> bool:
        return name in self._values


def head_of(request: Request) -> Head:
    head = request.scope.get("orders.head")
    if head is None:
        head = request.scope["orders.head"] = Head(request.scope["headers"])
    return head


def query_values(request: Request, name: str) -> list[str]:
    """Parsed only when there is a query string: most requests have none."""
    return request.query_params.getlist(name) if request.scope.get("query_string") else []


@dataclass
class Notes:
    """What the request's log line and metrics say about it, filled in as it goes."""

    route: str = "unmatched"
    profile: str | None = None
    key_hash: str | None = None
    outcome: Outcome | None = None
    degraded: bool = False

    def note(self, answer: Answer) -> None:
        self.outcome, self.degraded = answer.outcome, answer.degraded


async def create_order(request: Request, service: Service, notes: Notes) -> Response:
    notes.profile = profile_of(request, service)
    key = idempotency_key_of(request, required=service.settings.idempotency_key_required)
    notes.key_hash = key_hash(notes.profile, key)
    order_request = order_request_from(decode_json(await json_body(request)))
    answer = await service.engine.create_order(notes.profile, key, order_request)
    return order_response(answer, notes)


async def get_order(request: Request, service: Service, notes: Notes, order_id: str) -> Response:
    notes.profile = profile_of(request, service)
    order = await service.orders.get(notes.profile, parse_order_id(order_id))
    if order is None:  # absent, or another profile's: the same answer either way
        raise NotFound("no order with this id for this profile")
    return json_response(order.body(), 200)


async def list_orders(request: Request, service: Service, notes: Notes) -> Response:
    notes.profile = profile_of(request, service)
    limit = parse_limit(next(iter(query_values(request, "limit")), None))
    below = parse_cursor(next(iter(query_values(request, "cursor")), None))
    page = await service.orders.newest(notes.profile, limit, below)
    document = {
        "orders": [order.document() for order in page.orders],
        "nextCursor": None if page.next_below is None else encode_cursor(page.next_below),
    }
    return json_response(json.dumps(document, separators=(",", ":")).encode(), 200)


async def health(request: Request, service: Service, notes: Notes) -> Response:
    try:
        await service.orders.ping()
        postgres = "ok"
    except DatabaseUnavailable:
        postgres = "down"
    redis = "ok" if await service.claims.ping() else "down"
    status = "down" if postgres == "down" else ("degraded" if redis == "down" else "ok")
    document = {"status": status, "postgres": postgres, "redis": redis}
    return json_response(json.dumps(document, separators=(",", ":")).encode(), 503 if postgres == "down" else 200)


async def prometheus(request: Request, service: Service, notes: Notes) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, 200, media_type=content_type)


async def openapi(request: Request, service: Service, notes: Notes) -> Response:
    return json_response(OPENAPI_DOCUMENT, 200)


def order_response(answer: Answer, notes: Notes) -> Response:
    notes.note(answer)
    headers = {"location": f"/orders/{answer.order_id}"}
    if answer.replayed:
        headers["idempotent-replayed"] = "true"
    return json_response(answer.body, 201, headers)


def profile_of(request: Request, service: Service) -> str:
    query = query_values(request, "profileId")
    if len(query) > 1:
        raise InvalidProfile("profileId is given more than once")
    return auth.profile_of(
        single_header(request, "authorization", Unauthenticated),
        single_header(request, "x-profile-id", InvalidProfile),
        query[0] if query else None, service.settings,
    )


def single_header(request: Request, name: str, problem: type[Problem]) -> str | None:
    """A header that decides who is asking or what key is used may appear once: with
    two, believing either one would let a client choose which a proxy checked."""
    values = head_of(request).all(name)
    if len(values) > 1:
        raise problem(f"the {name} header is sent more than once")
    return values[0] if values else None


def idempotency_key_of(request: Request, *, required: bool) -> str | None:
    raw = single_header(request, "idempotency-key", InvalidIdempotencyKey)
    if raw is None:
        if required:
            raise MissingIdempotencyKey("send an Idempotency-Key header, e.g. a UUID per order")
        return None
    return parse_idempotency_key(raw)


def media_type(request: Request) -> str:
    return (head_of(request).get("content-type") or "").partition(";")[0].strip().lower()


async def json_body(request: Request) -> bytes:
    received = media_type(request)
    if received != JSON:
        shown = received if _MEDIA_TYPE.fullmatch(received) else ("none" if not received else "one that is not a media type")
        raise UnsupportedMediaType(f"send the order as {JSON} (the request's Content-Type was {shown})")
    return await read_body(request)


async def read_body(request: Request) -> bytes:
    """At most MAX_BODY_BYTES, whether or not the client said how long the body is."""
    head = head_of(request)
    if "transfer-encoding" in head:  # the server de-chunks; we would misread anything else
        if ",".join(head.all("transfer-encoding")).replace(" ", "").lower() != "chunked":
            raise InvalidBody("Transfer-Encoding may only be chunked")
    if (head.get("content-encoding") or "identity").strip().lower() != "identity":
        raise UnsupportedMediaType("send the body without a Content-Encoding (identity)")
    declared = head.get("content-length") or ""
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The server answers a framing it cannot parse with its own 400 and closes; a
        # client that hung up mid-body gets nothing. Either way no order is attempted.
        raise IncompleteBody("the connection ended before the whole request body arrived") from None
    return b"".join(chunks)


def json_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, headers=headers, media_type=JSON)
