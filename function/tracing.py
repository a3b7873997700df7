"""OpenTelemetry traces: the only module that imports OpenTelemetry, and only when on.

On when an OTLP endpoint is set and the SDK is not disabled (`Settings.tracing`); the
SDK reads the other standard OTEL_* variables itself. Off, nothing from OpenTelemetry is
imported, no exporter thread runs and no span object is made: the callers hold `None`
instead of a `Tracing`, and chose their plain code path once per process.

A `Tracing` is made per worker process, on first use (worker.py): functions-framework
imports the function in gunicorn's master and forks, and the exporter's thread must be
started in the process that records the spans.

Conventions followed: HTTP server spans of semantic conventions v1.26.0, database client
spans of v1.33.0 (`db.system.name`, `db.namespace`, `db.operation.name`), CloudEvents
attributes of the v1.26.0 registry. No attribute holds a key (only its hash, the log
line's `keyHash`), a token, a body, or a URL (they hold passwords).
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Concatenate, Iterator, Mapping, ParamSpec, Protocol, TypeVar, cast

from starlette.requests import Request
from starlette.responses import Response

from .created_event import CREATED_TYPE, SOURCE
from .problems import Problem
from .route_table import ROUTES, match
from .targets import DatabaseTarget

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .request import Head, Notes

# A store method the span decorators take: its store must say whether it traces (Traced).
Store = TypeVar("Store", bound="Traced")
P = ParamSpec("P")
R = TypeVar("R")
StoreMethod = Callable[Concatenate[Store, P], Awaitable[R]]
T = TypeVar("T")

DEFAULT_SERVICE_NAME = "orders"
# Probes and scrapes: a span per kubelet probe or Prometheus scrape would bury the orders.
UNTRACED_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json"})
_ROUTE_OF = {route.endpoint: route.path for route in ROUTES}
# One EVALSHA per call (redis-py falls back to EVAL once after a Redis restart).
_REDIS = {"db.system.name": "redis", "db.operation.name": "EVALSHA"}


class Tracing:
    """A tracer with its own provider and batch exporter, and the spans this function makes."""

    def __init__(self, database: DatabaseTarget) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; only when
        # neither names the service does ours apply (the SDK's fallback is "unknown_service").
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        # The sampler comes from OTEL_TRACES_SAMPLER (default parentbased_always_on: the
        # caller's, e.g. Knative's, sampling decision is followed); the exporter's endpoint,
        # headers and timeout from OTEL_EXPORTER_OTLP_*; the batch from OTEL_BSP_*.
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("orders")
        self._trace = trace
        self._propagate = propagate
        self._current = functools.partial(_Current, context.attach, context.detach, trace.set_span_in_context)
        self._w3c = TraceContextTextMapPropagator()  # CloudEvents' extension is W3C only
        # The headers OTEL_PROPAGATORS's propagators read (set when the API is imported).
        self._propagated_fields = frozenset(field.lower() for field in propagate.get_global_textmap().fields)
        self._server, self._client, self._internal = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
        self._error = Status(StatusCode.ERROR)
        self._postgres = {
            "db.system.name": "postgresql", "db.collection.name": "orders",
            "db.namespace": database.database, "server.address": database.host, "server.port": database.port,
        }

    # --- the server span ----------------------------------------------------------------

    def server_span(self, request: Request, head: Head, event_carrier: Mapping[str, str] | None) -> _Current:
        """The request's span, child of the caller's context: the W3C headers (or what
        OTEL_PROPAGATORS names), else the CloudEvent's traceparent attribute."""
        if event_carrier is None:
            # No header any configured propagator reads (most requests): nothing to extract.
            read = any(field in head for field in self._propagated_fields)
            parent = self._propagate.extract(head, getter=_HEAD_GETTER) if read else None
        else:
            parent = self._w3c.extract(event_carrier)
        method, path = request.method, request.scope["path"]
        route = _route_template(method, path)
        attributes: dict[str, Any] = {
            "http.request.method": method, "url.path": path, "url.scheme": request.scope.get("scheme", "http"),
            "network.protocol.version": request.scope.get("http_version", "1.1"),
        }
        if route is not None:
            attributes["http.route"] = route
        return self._current(self._tracer.start_span(
            method if route is None else f"{method} {route}", context=parent, kind=self._server,
            attributes=attributes, record_exception=False, set_status_on_exception=False,
        ))

    def answered(self, span: Span, response: Response, notes: Notes) -> None:
        """What the answer says about the request; the reply event gets our context."""
        if span.is_recording():  # a sampled-out span keeps nothing: nothing is given to it
            self._describe(span, response.status_code, notes)
        if "ce-type" in response.headers:  # a reply event: the Broker carries our context on
            carrier: dict[str, str] = {}
            self._w3c.inject(carrier, context=self._trace.set_span_in_context(span))
            for name, value in carrier.items():
                response.headers["ce-" + name] = value

    def _describe(self, span: Span, status: int, notes: Notes) -> None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:  # a 4xx is the client's to handle, not a server error
            span.set_status(self._error)
            span.set_attribute("error.type", str(status))
        if notes.outcome is not None:
            span.set_attribute("orders.outcome", notes.outcome.value)
            span.set_attribute("orders.degraded", notes.degraded)
        if notes.key_hash is not None:
            span.set_attribute("orders.key_hash", notes.key_hash)
        event = notes.event
        if event is not None:
            for name, value in (("cloudevents.event_id", event.id), ("cloudevents.event_source", event.source),
                                ("cloudevents.event_type", event.type),
                                ("cloudevents.event_spec_version", event.spec_version)):
                if value is not None:
                    span.set_attribute(name, value)

    @staticmethod
    def ids(span: Span) -> tuple[str, str]:
        """trace_id and span_id for the log line, as the W3C traceparent spells them."""
        context = span.get_span_context()  # to_bytes().hex(): cheaper than f"{id:032x}" (docs/bench.md)
        return context.trace_id.to_bytes(16, "big").hex(), context.span_id.to_bytes(8, "big").hex()

    # --- child spans --------------------------------------------------------------------

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[Span]:
        """An internal span (a wait); the caller adds what it learns."""
        with self._tracer.start_as_current_span(
            name, kind=self._internal, record_exception=False, set_status_on_exception=False,
        ) as span:
            yield span

    @contextlib.contextmanager
    def publish_span(self, order_id: str) -> Iterator[Span]:
        """One POST of an order event to K_SINK: a child of the request that made the
        order, or of the sweep that took it up again."""
        attributes = {"cloudevents.event_id": order_id, "cloudevents.event_type": CREATED_TYPE,
                      "cloudevents.event_source": SOURCE}
        with self._client_span("publish", attributes) as span:
            yield span

    def context_headers(self, span: Span) -> dict[str, str]:
        """W3C headers naming `span` as the parent, for the sink's (the Broker's) trace."""
        carrier: dict[str, str] = {}
        self._w3c.inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier

    def failed(self, span: Span, error_type: str) -> None:
        self._failed(span, error_type)

    async def redis_call(self, operation: str, call: Awaitable[T]) -> T:
        """One Redis call in a client span named after the operation (claim-or-read,
        finish, release). A failure's `error.type` is its kind
        (claims.CacheUnavailable.kind), as orders_redis_failures_total counts it."""
        if not self._recording():
            return await call
        with self._client_span(operation, _REDIS) as span:
            try:
                return await call
            except Exception as exc:
                self._failed(span, str(getattr(exc, "kind", type(exc).__name__)))
                raise

    async def postgres_call(self, name: str, operation: str, call: Awaitable[T]) -> T:
        """One unit of work on the pool in a client span."""
        if not self._recording():
            return await call
        with self._client_span(name, {**self._postgres, "db.operation.name": operation}) as span:
            try:
                return await call
            except Exception as exc:
                self._failed(span, type(exc).__name__)
                raise

    def _recording(self) -> bool:
        """Whether the request's span is kept. When its trace is sampled out, so is every
        child (the samplers decide by the parent or by the trace id, the same for all),
        so a child span would be made and dropped for nothing: none is made. With no
        span at all (work outside a request) a span is made, as a root."""
        current = self._trace.get_current_span()
        return bool(current.is_recording() or not current.get_span_context().is_valid)

    def _client_span(self, name: str, attributes: Mapping[str, Any]) -> _Current:
        return self._current(self._tracer.start_span(
            name, kind=self._client, attributes=attributes, record_exception=False, set_status_on_exception=False,
        ))

    def _failed(self, span: Span, error_type: str) -> None:
        span.set_status(self._error)
        span.set_attribute("error.type", error_type)


class _Current:
    """A started span made the current one while the block runs, then ended: what
    `start_as_current_span` does, without its three layers of context managers (the
    cost every request pays, sampled out or not). No exception is recorded on the span
    (the callers record what failed, by kind)."""

    __slots__ = ("span", "_attach", "_detach", "_in_context", "_token")

    def __init__(self, attach: Callable[[Any], object], detach: Callable[[Any], None],
                 in_context: Callable[[Span], Any], span: Span) -> None:
        self.span, self._attach, self._detach, self._in_context = span, attach, detach, in_context

    def __enter__(self) -> Span:
        self._token = self._attach(self._in_context(self.span))
        return self.span

    def __exit__(self, *exc_info: object) -> None:
        self._detach(self._token)
        self.span.end()


class Traced(Protocol):
    """A store whose methods the decorators below put in spans: it holds its `Tracing`,
    or None when tracing is off (ClaimStore, OrderStore)."""

    tracing: Tracing | None


class _SpannedMethod:
    """A store method that runs in a span when its store traces (`store.tracing`).
    The choice is made on a store's first use of the method and kept in its __dict__:
    with tracing off, every later call is the plain bound method, at no cost."""

    def __init__(self, method: Callable[..., Awaitable[Any]],
                 wrap: Callable[[Any, Tracing, Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]) -> None:
        functools.update_wrapper(self, method)  # type: ignore[arg-type]  # __doc__, __name__ for readers
        self._method, self._wrap, self._name = method, wrap, method.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, store: Traced | None, owner: type | None = None) -> Any:
        if store is None:
            return self
        bound = self._method.__get__(store, owner)
        tracing = store.tracing
        chosen = bound if tracing is None else self._wrap(store, tracing, bound)
        store.__dict__[self._name] = chosen
        return chosen


def postgres_span(name: str, operation: str) -> Callable[[StoreMethod[Store, P, R]], StoreMethod[Store, P, R]]:
    """Decorates a PostgreSQL store method: its unit of work in a client span."""
    def wrap(store: Any, tracing: Tracing, bound: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def traced(*args: Any) -> Any:
            return await tracing.postgres_call(name, operation, bound(*args))

        return traced

    def decorate(method: StoreMethod[Store, P, R]) -> StoreMethod[Store, P, R]:
        return cast(StoreMethod[Store, P, R], _SpannedMethod(method, wrap))

    return decorate


def redis_span(method: StoreMethod[Store, P, R]) -> StoreMethod[Store, P, R]:
    """Decorates the Redis store's one call, `(operation, script, key, *args)`: a client
    span named after the operation, unless Redis is not asked (cooling down)."""
    def wrap(store: Any, tracing: Tracing, bound: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def traced(operation: str, *args: Any) -> Any:
            if store.cooling_down:  # skipped: no span
                return await bound(operation, *args)
            return await tracing.redis_call(operation, bound(operation, *args))

        return traced

    return cast(StoreMethod[Store, P, R], _SpannedMethod(method, wrap))


def _route_template(method: str, path: str) -> str | None:
    """http.route as the route table spells it (`/orders/{orderId}`); None for no route."""
    try:
        endpoint, _ = match(method, path)
    except Problem:
        return None
    return _ROUTE_OF[endpoint]


class _HeadGetter:
    """Lets OpenTelemetry's propagators read the request's headers as request.Head holds them."""

    def get(self, carrier: Head, key: str) -> list[str] | None:
        values = carrier.all(key.lower())
        return values or None

    def keys(self, carrier: Head) -> list[str]:
        return []


_HEAD_GETTER: Any = _HeadGetter()
