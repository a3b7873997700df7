"""The receiver decodes what the real OpenTelemetry SDK exports over OTLP/HTTP: proof
that a span missing in a function test is missing from the function, not lost here."""

from __future__ import annotations

from typing import Iterator

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from .receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def provider_exporting_to(receiver: OtlpReceiver, compression: Compression | None = None) -> TracerProvider:
    # Its own provider, never the global one: a test must not change what others see.
    provider = TracerProvider(resource=Resource.create({"service.name": "receiver-test"}))
    exporter = OTLPSpanExporter(endpoint=receiver.traces_url, compression=compression)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_a_span_exported_by_the_sdk_arrives_with_ids_parent_kind_attributes_and_status(
    receiver: OtlpReceiver,
) -> None:
    provider = provider_exporting_to(receiver)
    tracer = provider.get_tracer("test")

    with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.response.status_code", 201)
        server.set_attribute("orders.degraded", False)
        with tracer.start_as_current_span("insert-or-get", kind=SpanKind.CLIENT) as client:
            client.set_attribute("db.system.name", "postgresql")
            client.set_attribute("ratio", 0.5)
            client.set_attribute("tags", ["a", "b"])
            client.set_status(Status(StatusCode.ERROR, "unique violation"))
    provider.shutdown()

    spans = receiver.wait_for(lambda spans: len(spans) == 2)
    by_name = {span.name: span for span in spans}
    parent, child = by_name["POST /orders"], by_name["insert-or-get"]
    context = server.get_span_context()
    assert parent.trace_id == f"{context.trace_id:032x}" == child.trace_id
    assert parent.span_id == f"{context.span_id:016x}"
    assert parent.parent_span_id is None and child.parent_span_id == parent.span_id
    assert parent.children(spans) == [child]
    assert (parent.kind, child.kind) == ("server", "client")
    assert parent.attributes == {"http.response.status_code": 201, "orders.degraded": False}
    assert child.attributes == {"db.system.name": "postgresql", "ratio": 0.5, "tags": ["a", "b"]}
    assert (parent.status, child.status, child.status_message) == ("unset", "error", "unique violation")
    assert parent.resource["service.name"] == "receiver-test"


def test_gzip_compressed_exports_are_decoded_too(receiver: OtlpReceiver) -> None:
    provider = provider_exporting_to(receiver, compression=Compression.Gzip)
    with provider.get_tracer("test").start_as_current_span("compressed"):
        pass
    provider.shutdown()

    assert [span.name for span in receiver.wait_for(lambda spans: bool(spans))] == ["compressed"]


def test_anything_but_a_protobuf_export_is_refused_and_keeps_no_span(receiver: OtlpReceiver) -> None:
    json_export = requests.post(receiver.traces_url, json={"resourceSpans": []}, timeout=5)
    garbage = requests.post(
        receiver.traces_url, data=b"\xff\x00not protobuf", headers={"Content-Type": "application/x-protobuf"}, timeout=5,
    )
    wrong_path = requests.post(receiver.endpoint + "/v1/metrics", data=b"", timeout=5)

    assert (json_export.status_code, garbage.status_code, wrong_path.status_code) == (415, 400, 404)
    assert receiver.spans == [] and receiver.export_requests == 0
