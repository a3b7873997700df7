"""The HTTP routes: parse the request, make one call, render the answer.

Reading the request (headers, query, body, the Notes) is request.py's."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from . import auth, metrics
from .database import DatabaseUnavailable
from .idempotency import Answer
from .validation import (
    decode_json,
    encode_cursor,
    order_request_from,
    parse_cursor,
    parse_idempotency_key,
    parse_limit,
    parse_order_id,
)
from .problems import InvalidIdempotencyKey, InvalidProfile, MissingIdempotencyKey, NotFound, Unauthenticated
from .records import key_hash
from .request import JSON, Notes, json_body, query_values, single_header
from .worker import Service

OPENAPI_DOCUMENT = (Path(__file__).resolve().parent / "openapi.json").read_bytes()  # kept true by tests


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


def idempotency_key_of(request: Request, *, required: bool) -> str | None:
    raw = single_header(request, "idempotency-key", InvalidIdempotencyKey)
    if raw is None:
        if required:
            raise MissingIdempotencyKey("send an Idempotency-Key header, e.g. a UUID per order")
        return None
    return parse_idempotency_key(raw)


def json_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, headers=headers, media_type=JSON)
