"""The route table and the one function that matches a request against it, which is
also where a request is decided to be a CloudEvent.

Paths are matched as received (after the server's percent-decoding): `//orders` or
`/orders/x/y` name no route and get a 404 problem, never a guess. One trailing slash
is forgiven (`/orders/` is `/orders`); HEAD is served as GET without a body.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from .problems import MethodNotAllowed, NotFound

ORDER_PREFIX = "/orders/"


class Endpoint(enum.StrEnum):
    """What a request is for: the `route` of the log line and of the request metrics,
    and the key of the entry point's table of handlers."""

    CREATE = "create"
    LIST = "list"
    GET = "get"
    HEALTH = "health"
    METRICS = "metrics"
    OPENAPI = "openapi"
    EVENT = "event"          # a CloudEvent, on `/` or `/orders`
    UNMATCHED = "unmatched"  # no route: a 404 or 405 problem


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI's spelling: `{orderId}` is one path segment
    endpoint: Endpoint


ROUTES = (
    Route("POST", "/orders", Endpoint.CREATE),
    Route("GET", "/orders", Endpoint.LIST),
    Route("GET", "/orders/{orderId}", Endpoint.GET),
    Route("GET", "/healthz", Endpoint.HEALTH),
    Route("GET", "/metrics", Endpoint.METRICS),
    Route("GET", "/openapi.json", Endpoint.OPENAPI),
    Route("POST", "/", Endpoint.EVENT),
)
_BY_PATH: dict[str, dict[str, Endpoint]] = {}
for _route in ROUTES:
    _BY_PATH.setdefault(_route.path, {})[_route.method] = _route.endpoint


def _never() -> bool:
    return False


def match(method: str, path: str, cloudevent: Callable[[], bool] = _never) -> tuple[Endpoint, str | None]:
    """(endpoint, the order id for `/orders/{orderId}` or None); a Problem otherwise.

    A POST to `/` is always an event; a POST to `/orders` is one when it carries a
    CloudEvent (`cloudevent()`, asked only then: request.is_cloudevent reads the headers)."""
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    order_id = None
    methods = _BY_PATH.get(path)
    if methods is None and path.startswith(ORDER_PREFIX) and "/" not in path[len(ORDER_PREFIX):]:
        methods, order_id = _BY_PATH["/orders/{orderId}"], path[len(ORDER_PREFIX):]
    if methods is None:
        raise NotFound("no such route")
    endpoint = methods.get("GET" if method == "HEAD" else method)
    if endpoint is None:
        allowed = ", ".join(sorted(methods))
        raise MethodNotAllowed(f"this route allows {allowed}", headers={"allow": allowed})
    if endpoint is Endpoint.CREATE and cloudevent():
        endpoint = Endpoint.EVENT
    return endpoint, order_id
