"""Reading a request: its headers once, its query, its body within bounds, and the
Notes that its log line, metrics and server span are made from.

Below the handlers (http_in.py, events_in.py) and above nothing of theirs: tracing and the
entry point read requests through this module, never through a handler module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol

from starlette.requests import ClientDisconnect, Request

from .labels import Outcome
from .problems import BodyTooLarge, IncompleteBody, InvalidBody, Problem, UnsupportedMediaType
from .route_table import Endpoint, match

MAX_BODY_BYTES = 64 * 1024
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


@dataclass(frozen=True)
class EventIdentity:
    """The CloudEvent a request carried, once parsed: what its server span names.
    An attribute that is not a string (a malformed event) is left out."""

    id: str | None
    source: str | None
    type: str | None
    spec_version: str | None

    @classmethod
    def of(cls, attribute: Callable[[str], object]) -> EventIdentity:
        def text(name: str) -> str | None:
            value = attribute(name)
            return value if isinstance(value, str) else None

        return cls(text("id"), text("source"), text("type"), text("specversion"))


class Answered(Protocol):
    """What an engine answer tells the notes (idempotency.Answer)."""

    @property
    def outcome(self) -> Outcome: ...

    @property
    def degraded(self) -> bool: ...


@dataclass
class Notes:
    """What the request's log line, metrics and span say about it, filled in as it goes."""

    route: Endpoint = Endpoint.UNMATCHED
    profile: str | None = None
    key_hash: str | None = None
    outcome: Outcome | None = None
    degraded: bool = False
    event: EventIdentity | None = None  # set once a CloudEvent is parsed

    def note(self, answer: Answered) -> None:
        self.outcome, self.degraded = answer.outcome, answer.degraded


def single_header(request: Request, name: str, problem: type[Problem]) -> str | None:
    """A header that decides who is asking or what key is used may appear once: with
    two, believing either one would let a client choose which a proxy checked."""
    values = head_of(request).all(name)
    if len(values) > 1:
        raise problem(f"the {name} header is sent more than once")
    return values[0] if values else None


def is_cloudevent(request: Request) -> bool:
    """Binary mode's `ce-specversion` header, or a structured or batched event's media type."""
    return "ce-specversion" in head_of(request) or media_type(request).startswith("application/cloudevents")


def route_of(request: Request) -> tuple[Endpoint, str | None]:
    """The request's endpoint (and order id): route_table.match, able to ask whether the
    request carries a CloudEvent."""
    return match(request.method, request.scope["path"], lambda: is_cloudevent(request))


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
