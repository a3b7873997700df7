"""A real OTLP/HTTP trace receiver for tests: what a collector would get from the function.

It listens on a free loopback port, accepts `POST /v1/traces` with an
`application/x-protobuf` ExportTraceServiceRequest (gzip or not), decodes it with the
`opentelemetry-proto` package and keeps every span as a plain `Span` to assert on. It
answers like a collector (200 and an empty ExportTraceServiceResponse), so the exporter
in the function sees a healthy backend and never retries.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from devserver.waiting import wait_until
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class Span:
    """One received span, with ids as the lowercase hex W3C traceparent uses."""

    trace_id: str
    span_id: str
    parent_span_id: str | None  # None for a root span
    name: str
    kind: str  # "server", "client", "internal", "producer", "consumer"
    attributes: dict[str, Any]
    status: str  # "unset", "ok", "error"
    status_message: str = ""
    start_ns: int = 0
    end_ns: int = 0
    resource: dict[str, Any] = field(default_factory=dict)  # service.name and the like

    def children(self, spans: list[Span]) -> list[Span]:
        return [span for span in spans if span.parent_span_id == self.span_id]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: list[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


_KINDS = {
    ProtoSpan.SPAN_KIND_SERVER: "server", ProtoSpan.SPAN_KIND_CLIENT: "client",
    ProtoSpan.SPAN_KIND_INTERNAL: "internal", ProtoSpan.SPAN_KIND_PRODUCER: "producer",
    ProtoSpan.SPAN_KIND_CONSUMER: "consumer", ProtoSpan.SPAN_KIND_UNSPECIFIED: "unspecified",
}
_STATUSES = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


def decode(body: bytes) -> list[Span]:
    """The spans of one ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest.FromString(body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(Span(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None, name=span.name,
                    kind=_KINDS[span.kind], attributes=_attributes(span.attributes),
                    status=_STATUSES[span.status.code], status_message=span.status.message,
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano, resource=resource,
                ))
    return spans


class OtlpReceiver:
    """`with OtlpReceiver() as receiver:` then point OTEL_EXPORTER_OTLP_ENDPOINT at
    `receiver.endpoint` and read `receiver.spans` (or `wait_for` them)."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self.export_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it (the SDK adds /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def traces_url(self) -> str:
        """The full URL, as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT takes it."""
        return self.endpoint + TRACES_PATH

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def wait_for(
        self, condition: Callable[[list[Span]], bool], timeout_seconds: float = 15.0,
    ) -> list[Span]:
        """The spans once `condition(spans)` holds. Exporters batch, so spans arrive a
        schedule delay after the request; the timeout only bounds a test that fails."""
        wait_until(lambda: condition(self.spans), what="the spans awaited", timeout_seconds=timeout_seconds)
        return self.spans

    def trace(self, trace_id: str, timeout_seconds: float = 15.0) -> list[Span]:
        """The spans of one trace, once its server span arrived. A server span ends after
        all its children, so by then they were exported too (in its batch or before)."""
        def of_trace(spans: list[Span]) -> list[Span]:
            return [span for span in spans if span.trace_id == trace_id]

        spans = self.wait_for(lambda spans: any(s.kind == "server" for s in of_trace(spans)), timeout_seconds)
        return of_trace(spans)

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _received(self, spans: list[Span]) -> None:
        with self._lock:
            self._spans.extend(spans)
            self.export_requests += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != TRACES_PATH:
                    return self._answer(404, b"", "text/plain")
                if self.headers.get("Content-Type", "").split(";")[0].strip() != PROTOBUF:
                    return self._answer(415, b"only application/x-protobuf", "text/plain")
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    spans = decode(body)
                except Exception:  # a malformed export is the test's finding: say so
                    return self._answer(400, b"not an ExportTraceServiceRequest", "text/plain")
                receiver._received(spans)
                self._answer(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows what a failing test asserted

        return Handler
