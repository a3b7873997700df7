"""The route table and the one function that matches a request against it.

Paths are matched as received (after the server's percent-decoding): `//orders` or
`/orders/x/y` name no route and get a 404 problem, never a guess. One trailing slash
is forgiven (`/orders/` is `/orders`); HEAD is served as GET without a body.
"""

from __future__ import annotations

from dataclasses import dataclass

from .problems import MethodNotAllowed, NotFound

ORDER_PREFIX = "/orders/"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI's spelling: `{orderId}` is one path segment
    endpoint: str


ROUTES = (
    Route("POST", "/orders", "create"),
    Route("GET", "/orders", "list"),
    Route("GET", "/orders/{orderId}", "get"),
    Route("GET", "/healthz", "health"),
    Route("GET", "/metrics", "metrics"),
    Route("GET", "/openapi.json", "openapi"),
    Route("POST", "/", "event"),
)
_BY_PATH: dict[str, dict[str, str]] = {}
for _route in ROUTES:
    _BY_PATH.setdefault(_route.path, {})[_route.method] = _route.endpoint


def match(method: str, path: str) -> tuple[str, str | None]:
    """(endpoint, the order id for `/orders/{orderId}` or None); a Problem otherwise."""
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
    return endpoint, order_id
