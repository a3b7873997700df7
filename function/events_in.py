"""CloudEvents in and out: an order event goes through the same engine call as HTTP.

Every `cloudevents` import lives in this module: functions-framework 3.10 holds the SDK
at 1.11-1.12 (`cloudevents.http`), and a move to 2.x should touch this file only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from .created_event import created_event_headers
from .problems import InvalidBody, InvalidEvent
from .records import key_hash
from .request import EventIdentity, Notes, head_of, media_type, read_body
from .validation import decode_json, order_request_from, parse_idempotency_key, profile_from_either
from .worker import Service

STRUCTURED = "application/cloudevents+json"

CREATE_TYPE = "com.example.order.create"
PING_TYPE = "dev.knative.sources.ping"  # a PingSource waking a copy to publish what is pending


async def handle(request: Request, service: Service, notes: Notes) -> Response:
    """Create the order an event asks for and reply with a `created` event (with K_SINK
    set: answer 202 and let the outbox publish it, once per order).

    Status codes follow Knative's retry rules: a malformed event is a 400 (never
    retried), an original still in flight a 409 and PostgreSQL down a 503 (retried).
    """
    event = _parse(request, await read_body(request))
    notes.event = EventIdentity.of(event.get)  # for the server span's attributes, when tracing
    if event["type"] == PING_TYPE:
        if service.relay is not None:
            await service.relay.sweep()
        return Response(None, 202)
    if event["type"] != CREATE_TYPE:
        raise InvalidEvent(f"type must be {CREATE_TYPE}")
    data = _data_object(event.data)
    notes.profile = _profile(data, event.get("profileid"))
    key = _idempotency_key(event)
    notes.key_hash = key_hash(notes.profile, key)
    order_request = order_request_from(data, allowed_extra=frozenset({"profileId"}))
    answer = await service.engine.create_order(notes.profile, key, order_request)
    notes.note(answer)
    if service.relay is not None:  # the outbox announces it: a reply would be a second event
        return Response(None, 202, headers={"idempotent-replayed": "true"} if answer.replayed else None)
    headers = created_event_headers(answer.order_id, _created_at(answer.body))
    if answer.replayed:
        headers["idempotent-replayed"] = "true"
    return Response(answer.body, 200, headers=headers)


async def trace_carrier(request: Request) -> tuple[dict[str, str] | None, Request]:
    """The sender's trace context as the CloudEvents distributed-tracing extension
    carries it, for an event sent without a `traceparent` header: `ce-traceparent` in
    binary mode, the `traceparent` attribute in structured mode. A structured event's
    body is read for it here (bounded like any body) and handed on as if unread.
    Only called when tracing; None when the event carries no context."""
    head = head_of(request)
    traceparent = head.get("ce-traceparent")
    if traceparent is not None:
        return _carrier(traceparent, head.get("ce-tracestate")), request
    if media_type(request) != STRUCTURED:
        return None, request
    body = await read_body(request)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # the route reports it
        document = None
    carrier = None
    if isinstance(document, dict) and isinstance(document.get("traceparent"), str):
        tracestate = document.get("tracestate")
        carrier = _carrier(document["traceparent"], tracestate if isinstance(tracestate, str) else None)
    return carrier, _unread(request, body)


def _carrier(traceparent: str, tracestate: str | None) -> dict[str, str]:
    return {"traceparent": traceparent} if tracestate is None else {"traceparent": traceparent, "tracestate": tracestate}


def _unread(request: Request, body: bytes) -> Request:
    """The same request, its body delivered again to whoever reads it next."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


def _parse(request: Request, body: bytes) -> CloudEvent:
    if media_type(request) == STRUCTURED:
        # Our strict reader first, so broken JSON is reported as broken JSON (the SDK
        # would fall back to reading it as a binary-mode event and report missing fields).
        try:
            decode_json(body)
        except InvalidBody as exc:
            raise InvalidEvent(exc.detail.replace("the body", "the structured event")) from None
    try:
        # Binary-mode data is kept as bytes and decoded by our own strict JSON reader.
        return from_http(dict(request.headers), body, data_unmarshaller=lambda raw: raw)
    except (GenericException, ValueError, RecursionError) as exc:
        # The SDK parses a structured event itself: a body that is not UTF-8 raises
        # UnicodeDecodeError (a ValueError), one nested too deeply RecursionError.
        # Its message can quote the request back: name the kind of fault only.
        raise InvalidEvent(f"not a valid CloudEvent ({type(exc).__name__})") from None


def _data_object(data: Any) -> dict[str, Any]:
    if isinstance(data, str):  # structured mode: the SDK hands over the data re-serialized
        data = data.encode()
    if isinstance(data, (bytes, bytearray)):
        data = decode_json(bytes(data)) if data else None
    if not isinstance(data, dict):
        raise InvalidEvent("data must be a JSON object with the order fields")
    return data


def _profile(data: dict[str, Any], extension: Any) -> str:
    return profile_from_either(
        data.get("profileId"), extension, ("data.profileId", "the profileid attribute"), missing=InvalidEvent,
    )


def _idempotency_key(event: CloudEvent) -> str:
    """The `idempotencykey` attribute, else the event's identity (source, id).

    The identity is hashed to a fixed-length key: source and id are free-form and
    together may exceed the 255-character key limit.
    """
    explicit = event.get("idempotencykey")
    if explicit is not None:
        return parse_idempotency_key(str(explicit), name="the idempotencykey attribute")
    source, event_id = event["source"], event["id"]
    if not (isinstance(source, str) and source and isinstance(event_id, str) and event_id):
        raise InvalidEvent("source and id must be non-empty strings")
    # surrogatepass: a structured event's JSON may spell a lone surrogate; it still hashes.
    identity = f"{source}\n{event_id}".encode("utf-8", "surrogatepass")
    return "ce:" + hashlib.sha256(identity).hexdigest()


def _created_at(body: bytes) -> str:
    return str(decode_json(body)["createdAt"])

