"""OpenTelemetry traces: the only module that imports OpenTelemetry, and only when on.

On when an OTLP endpoint is set and the SDK is not disabled (`Settings.tracing`); the
SDK reads the other standard OTEL_* variables itself. Off, nothing from OpenTelemetry is
imported, no exporter thread runs and no span object is made: the callers hold `None`
instead of a `Tracing`, and chose their plain code path once per process.

A `Tracing` is made per worker process, on first use (service.py): functions-framework
imports the function in gunicorn's master and forks, and the exporter's thread must be
started in the process that records the spans.

Conventions followed: HTTP server spans of semantic conventions v1.26.0, database client
spans of v1.33.0 (`db.system.name`, `db.namespace`, `db.operation.name`), CloudEvents
attributes of the v1.26.0 registry. No attribute holds a key (only its hash, the log
line's `keyHash`), a token, a body, or a URL (they hold passwords).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Mapping, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from .order_events import CREATED_TYPE, SOURCE
from .problems import Problem
from .routing import ROUTES, match
from .targets import DatabaseTarget

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .routes import Head, Notes

Call = TypeVar("Call", bound=Callable[..., Awaitable[Any]])

DEFAULT_SERVICE_NAME = "orders"
# Probes and scrapes: a span per kubelet probe or Prometheus scrape would bury the orders.
UNTRACED_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json"})
_ROUTE_OF = {route.endpoint: route.path for route in ROUTES}
# One EVALSHA per call (redis-py falls back to EVAL once after a Redis restart).
_REDIS = {"db.system.name": "redis", "db.operation.name": "EVALSHA"}


class Tracing:
    """A tracer with its own provider and batch exporter, and the spans this function makes."""

    def __init__(self, database: DatabaseTarget) -> None:
        from opentelemetry import propagate, trace
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
        self._w3c = TraceContextTextMapPropagator()  # CloudEvents' extension is W3C only
        self._server, self._client, self._internal = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
        self._error = Status(StatusCode.ERROR)
        self._postgres = {
            "db.system.name": "postgresql", "db.collection.name": "orders",
            "db.namespace": database.database, "server.address": database.host, "server.port": database.port,
        }

    # --- the server span ----------------------------------------------------------------

    @contextlib.contextmanager
    def server_span(self, request: Request, head: Head, event_carrier: Mapping[str, str] | None) -> Iterator[Span]:
        """The request's span, child of the caller's context: the W3C headers (or what
        OTEL_PROPAGATORS names), else the CloudEvent's traceparent attribute."""
        if event_carrier is None:
            parent = self._propagate.extract(head, getter=_HEAD_GETTER)
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
        with self._tracer.start_as_current_span(
            method if route is None else f"{method} {route}", context=parent, kind=self._server,
            attributes=attributes, record_exception=False, set_status_on_exception=False,
        ) as span:
            yield span

    def answered(self, span: Span, response: Response, notes: Notes, event: tuple[Any, ...] | None) -> None:
        """What the answer says about the request; the reply event gets our context."""
        status = response.status_code
        span.set_attribute("http.response.status_code", status)
        if status >= 500:  # a 4xx is the client's to handle, not a server error
            span.set_status(self._error)
            span.set_attribute("error.type", str(status))
        if notes.outcome is not None:
            span.set_attribute("orders.outcome", notes.outcome.value)
            span.set_attribute("orders.degraded", notes.degraded)
        if notes.key_hash is not None:
            span.set_attribute("orders.key_hash", notes.key_hash)
        if event is not None:  # (id, source, type, specversion): events.identity
            for name, value in zip(_EVENT_ATTRIBUTES, event):
                if isinstance(value, str):
                    span.set_attribute(name, value)
        if "ce-type" in response.headers:  # a reply event: the Broker carries our context on
            carrier: dict[str, str] = {}
            self._w3c.inject(carrier, context=self._trace.set_span_in_context(span))
            for name, value in carrier.items():
                response.headers["ce-" + name] = value

    @staticmethod
    def ids(span: Span) -> tuple[str, str]:
        """trace_id and span_id for the log line, as the W3C traceparent spells them."""
        context = span.get_span_context()
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

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

    def redis_calls(self, call: Call, *, skipped: Callable[[], bool]) -> Call:
        """`call(operation, script, key, *args)` in a client span named after the
        operation (claim-or-read, finish, release), unless `skipped()` says Redis is not
        asked at all (cooling down). A failure's `error.type` is its kind
        (claims.CacheUnavailable.kind), as orders_redis_failures_total counts it."""
        async def traced(operation: str, *args: Any) -> Any:
            if skipped():
                return await call(operation, *args)
            with self._client_span(operation, _REDIS) as span:
                try:
                    return await call(operation, *args)
                except Exception as exc:
                    self._failed(span, str(getattr(exc, "kind", type(exc).__name__)))
                    raise

        return traced  # type: ignore[return-value]

    def postgres_call(self, name: str, operation: str, call: Call) -> Call:
        """`call` (one unit of work on the pool) inside a client span."""
        attributes = {**self._postgres, "db.operation.name": operation}

        async def traced(*args: Any, **kwargs: Any) -> Any:
            with self._client_span(name, attributes) as span:
                try:
                    return await call(*args, **kwargs)
                except Exception as exc:
                    self._failed(span, type(exc).__name__)
                    raise

        return traced  # type: ignore[return-value]

    def _client_span(self, name: str, attributes: Mapping[str, Any]) -> contextlib.AbstractContextManager[Span]:
        return self._tracer.start_as_current_span(
            name, kind=self._client, attributes=attributes, record_exception=False, set_status_on_exception=False,
        )

    def _failed(self, span: Span, error_type: str) -> None:
        span.set_status(self._error)
        span.set_attribute("error.type", error_type)


_EVENT_ATTRIBUTES = (
    "cloudevents.event_id", "cloudevents.event_source", "cloudevents.event_type", "cloudevents.event_spec_version",
)


def _route_template(method: str, path: str) -> str | None:
    """http.route as the route table spells it (`/orders/{orderId}`); None for no route."""
    try:
        endpoint, _ = match(method, path)
    except Problem:
        return None
    return _ROUTE_OF[endpoint]


class _HeadGetter:
    """Lets OpenTelemetry's propagators read the request's headers as routes.Head holds them."""

    def get(self, carrier: Head, key: str) -> list[str] | None:
        values = carrier.all(key.lower())
        return values or None

    def keys(self, carrier: Head) -> list[str]:
        return []


_HEAD_GETTER: Any = _HeadGetter()
