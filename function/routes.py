"""The HTTP routes: parse the request, make one call, render the answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask

from . import auth, metrics
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
from .problems import (
    BodyTooLarge,
    MissingIdempotencyKey,
    NotFound,
    StoreUnavailable,
    UnsupportedMediaType,
)
from .records import key_hash
from .service import Service

MAX_BODY_BYTES = 64 * 1024
OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"  # the API, kept true by tests
JSON = "application/json"


@dataclass
class Trace:
    """What the request's log line and metrics say about it, filled in as it goes."""

    route: str = "unmatched"
    profile: str | None = None
    key_hash: str | None = None
    outcome: str | None = None
    degraded: bool = False

    def note(self, answer: Answer) -> None:
        self.outcome, self.degraded = answer.outcome.value, answer.degraded


def create_order(request: flask.Request, service: Service, trace: Trace) -> flask.Response:
    trace.profile = profile_of(request, service)
    key = idempotency_key_of(request, required=service.settings.idempotency_key_required)
    trace.key_hash = key_hash(trace.profile, key)
    order_request = order_request_from(decode_json(json_body(request)))
    answer = service.engine.create_order(trace.profile, key, order_request)
    return order_response(answer, trace)


def get_order(request: flask.Request, service: Service, trace: Trace, order_id: str) -> flask.Response:
    trace.profile = profile_of(request, service)
    order = service.orders.get(trace.profile, parse_order_id(order_id))
    if order is None:  # absent, or another profile's: the same answer either way
        raise NotFound("no order with this id for this profile")
    return _json_response(order.body(), 200)


def list_orders(request: flask.Request, service: Service, trace: Trace) -> flask.Response:
    trace.profile = profile_of(request, service)
    limit = parse_limit(request.args.get("limit"))
    below = parse_cursor(request.args.get("cursor"))
    page = service.orders.newest(trace.profile, limit, below)
    document = {
        "orders": [order.document() for order in page.orders],
        "nextCursor": None if page.next_below is None else encode_cursor(page.next_below),
    }
    return _json_response(json.dumps(document, separators=(",", ":")).encode(), 200)


def health(request: flask.Request, service: Service, trace: Trace) -> flask.Response:
    try:
        service.orders.ping()
        postgres = "ok"
    except StoreUnavailable:
        postgres = "down"
    redis = "ok" if service.claims.ping() else "down"
    status = "down" if postgres == "down" else ("degraded" if redis == "down" else "ok")
    document = {"status": status, "postgres": postgres, "redis": redis}
    return _json_response(json.dumps(document, separators=(",", ":")).encode(), 503 if postgres == "down" else 200)


def prometheus(request: flask.Request, service: Service, trace: Trace) -> flask.Response:
    body, content_type = metrics.exposition()
    return flask.Response(body, 200, content_type=content_type)


def openapi(request: flask.Request, service: Service, trace: Trace) -> flask.Response:
    return _json_response(OPENAPI_PATH.read_bytes(), 200)


def order_response(answer: Answer, trace: Trace) -> flask.Response:
    trace.note(answer)
    response = _json_response(answer.body, 201)
    response.headers["Location"] = f"/orders/{answer.order_id}"
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def profile_of(request: flask.Request, service: Service) -> str:
    return auth.profile_of(
        request.headers.get("Authorization"), request.headers.get("X-Profile-Id"),
        request.args.get("profileId"), service.settings,
    )


def idempotency_key_of(request: flask.Request, *, required: bool) -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        if required:
            raise MissingIdempotencyKey("send an Idempotency-Key header, e.g. a UUID per order")
        return None
    return parse_idempotency_key(raw)


def json_body(request: flask.Request) -> bytes:
    if request.mimetype != JSON:
        raise UnsupportedMediaType(f"send the order as {JSON}")
    return read_body(request)


def read_body(request: flask.Request) -> bytes:
    """At most MAX_BODY_BYTES, whether or not the client said how long the body is."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    return body


def _json_response(body: bytes, status: int, headers: dict[str, Any] | None = None) -> flask.Response:
    return flask.Response(body, status, headers=headers, content_type=JSON)
