"""Traces a Knative user can follow: from the caller's `traceparent` (HTTP header, or the
CloudEvent's distributed-tracing attribute), through claim, wait, insert and finish, to
the reply event; the request's log line carries the same ids; nothing secret leaks.

What the function is expected to export (OpenTelemetry semantic conventions: HTTP
v1.26.0, stable since 1.23; database v1.33.0, stable; CloudEvents attributes of the
v1.26.0 registry):

    span                kind      parent        attributes (beyond the semconv ones)
    "POST /orders"      server    traceparent   http.request.method, http.route,
    ("POST /" for an                            http.response.status_code, url.path,
     event at /)                                url.scheme; orders.outcome,
                                                orders.degraded, orders.key_hash; events
                                                also cloudevents.event_id/_source/_type/
                                                _spec_version
    "claim-or-read"     client    server span   db.system.name="redis", db.operation.name
    "wait"              internal  server span   orders.wait.ended (done, found-in-postgres,
                                                conflict, redis-down)
    "insert-or-get"     client    server span   db.system.name="postgresql",
                                                db.collection.name="orders",
                                                db.operation.name="INSERT", db.namespace
    "finish"            client    server span   db.system.name="redis", db.operation.name

A wait's polls (claim-or-read) and its one stale-claim check (`find`, PostgreSQL) are
children of its `wait` span.

A failed Redis call's span has status error and `error.type` = the failure kind of
orders_redis_failures_total. The resource's service.name defaults to "orders".
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
import requests

from devserver.copies import FunctionCopy
from devserver.servers import free_port
from devserver.waiting import wait_until
from function.labels import RedisFailure
from support import CREATE_EVENT, Client, Database, binary_event, redis_script_calls
from tracing.receiver import OtlpReceiver, Span

REDIS_FAILURE_KINDS = {kind.value for kind in RedisFailure}
# Export within 50 ms instead of the SDK's 5 s, so a test does not idle; and the
# request log lines, which the copies' base settings turn off.
TRACED = {"OTEL_BSP_SCHEDULE_DELAY": "50", "LOG_LEVEL": "info"}
PY_SPY = Path(sys.executable).parent / "py-spy"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def traced(start_copies: Callable[..., list[FunctionCopy]], receiver: OtlpReceiver) -> Callable[..., FunctionCopy]:
    """Start a copy that exports to the receiver (plus any extra env)."""
    def start(**env: str) -> FunctionCopy:
        (copy,) = start_copies(1, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **TRACED, **env)
        return copy
    return start


def caller_context() -> tuple[str, str, str]:
    """(trace id, parent span id, traceparent) of a caller that is tracing, sampled."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def server_span(spans: list[Span]) -> Span:
    servers = [span for span in spans if span.kind == "server"]
    assert len(servers) == 1, f"expected one server span, got {[s.name for s in spans]}"
    return servers[0]


def children_by_name(server: Span, spans: list[Span]) -> dict[str, Span]:
    return {span.name: span for span in server.children(spans)}


def request_log_line(copy: FunctionCopy, trace_id: str) -> dict[str, Any]:
    """The request's JSON log line carrying this trace id (written as the answer goes)."""
    assert copy.log is not None
    found: list[dict[str, Any]] = []

    def written() -> bool:
        try:
            found[:] = [line for line in request_log_lines(copy) if line.get("trace_id") == trace_id]
        except ValueError:  # caught a line half written: read again
            return False
        return bool(found)

    wait_until(written, what=f"a request log line with trace_id {trace_id}", timeout_seconds=10, log=copy.log)
    return found[0]


def request_log_lines(copy: FunctionCopy) -> list[dict[str, Any]]:
    assert copy.log is not None
    lines = [json.loads(line) for line in copy.log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "request"]


def assert_no_attribute_holds(spans: list[Span], *secret_values: str) -> None:
    for span in spans:
        for name, value in {**span.attributes, **span.resource}.items():
            for secret in secret_values:
                assert secret not in str(value), f"{span.name}: attribute {name} holds {secret!r}"


def assert_claim_insert_finish_under(server: Span, spans: list[Span]) -> dict[str, Span]:
    children = children_by_name(server, spans)
    assert {"claim-or-read", "insert-or-get", "finish"} <= children.keys(), list(children)
    claim, insert, finish = children["claim-or-read"], children["insert-or-get"], children["finish"]
    assert claim.start_ns <= insert.start_ns <= finish.start_ns
    for redis_call in (claim, finish):
        assert redis_call.kind == "client" and redis_call.attributes["db.system.name"] == "redis"
        assert redis_call.attributes["db.operation.name"]
    assert insert.kind == "client"
    assert insert.attributes["db.system.name"] == "postgresql"
    assert insert.attributes["db.collection.name"] == "orders"
    assert insert.attributes["db.operation.name"] == "INSERT"
    return children


# --- HTTP --------------------------------------------------------------------------------

def test_a_create_is_one_server_span_under_the_callers_parent_with_claim_insert_and_finish(
    traced: Callable[..., FunctionCopy], receiver: OtlpReceiver, base_env: dict[str, str],
) -> None:
    copy = traced()
    trace_id, parent, traceparent = caller_context()
    key = f"private-key-{uuid.uuid4()}"
    body = {"productQuantity": 3, "productId": "sku-private-4711"}

    answer = Client(copy.url).create(
        body, key=key, headers={"traceparent": traceparent, "Authorization": "Bearer token-never-exported"},
    )

    assert answer.status_code == 201
    spans = receiver.trace(trace_id)
    server = server_span(spans)
    assert (server.name, server.parent_span_id, server.status) == ("POST /orders", parent, "unset")
    assert server.attributes | {
        "http.request.method": "POST", "http.route": "/orders", "http.response.status_code": 201,
        "url.path": "/orders", "url.scheme": "http",
        "orders.outcome": "created", "orders.degraded": False,
    } == server.attributes
    assert server.resource["service.name"] == "orders"
    assert_claim_insert_finish_under(server, spans)
    line = request_log_line(copy, trace_id)
    assert line["span_id"] == server.span_id
    assert server.attributes["orders.key_hash"] == line["keyHash"]
    assert_no_attribute_holds(
        spans, key, "sku-private-4711", "token-never-exported", json.dumps(body),
        base_env["DATABASE_URL"], base_env["REDIS_URL"],
    )


def test_a_replay_is_answered_from_redis_with_no_insert(
    traced: Callable[..., FunctionCopy], receiver: OtlpReceiver,
) -> None:
    copy = traced()
    client = Client(copy.url)
    client.create(key="replayed")
    trace_id, parent, traceparent = caller_context()

    replay = client.create(key="replayed", headers={"traceparent": traceparent})

    assert replay.headers["Idempotent-Replayed"] == "true"
    spans = receiver.trace(trace_id)
    server = server_span(spans)
    assert server.parent_span_id == parent
    assert (server.attributes["orders.outcome"], server.attributes["orders.degraded"]) == ("replayed-redis", False)
    children = children_by_name(server, spans)
    assert "claim-or-read" in children and "insert-or-get" not in children
    assert request_log_line(copy, trace_id)["span_id"] == server.span_id


def test_a_duplicate_that_waits_for_its_original_has_a_wait_span_saying_how_it_ended(
    traced: Callable[..., FunctionCopy], receiver: OtlpReceiver, redis_server: Any,
) -> None:
    from function.fingerprint import fingerprint
    from function.records import InFlight, encode, redis_key
    from function.validation import order_request_from
    from support import ORDER

    copy = traced(IDEMPOTENCY_WAIT_SECONDS="0.3")
    # An original in flight on another copy: its claim, held for 10 s.
    claim = InFlight(fingerprint(order_request_from(ORDER).canonical()), "elsewhere")
    redis_server.client().set(redis_key("alice", "busy"), encode(claim), px=10_000)
    trace_id, parent, traceparent = caller_context()

    answer = Client(copy.url).create(key="busy", headers={"traceparent": traceparent})

    assert answer.status_code == 409
    spans = receiver.trace(trace_id)
    server = server_span(spans)
    assert server.parent_span_id == parent
    assert server.attributes["http.response.status_code"] == 409
    assert server.status == "unset"  # a 4xx is the client's to handle, not a server error
    assert server.attributes["orders.outcome"] == "conflict"
    children = children_by_name(server, spans)
    assert {"claim-or-read", "wait"} <= children.keys()
    assert children["wait"].kind == "internal"
    assert children["wait"].attributes["orders.wait.ended"] == "conflict"
    assert children["claim-or-read"].end_ns <= children["wait"].start_ns


def test_a_create_with_redis_down_is_degraded_and_its_failed_redis_call_is_an_error_span(
    traced: Callable[..., FunctionCopy], receiver: OtlpReceiver,
) -> None:
    copy = traced(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    trace_id, parent, traceparent = caller_context()

    answer = Client(copy.url).create(key="no-redis", headers={"traceparent": traceparent})

    assert answer.status_code == 201
    spans = receiver.trace(trace_id)
    server = server_span(spans)
    assert server.parent_span_id == parent
    assert (server.attributes["orders.outcome"], server.attributes["orders.degraded"]) == ("created", True)
    children = children_by_name(server, spans)
    assert "insert-or-get" in children
    for name in ("claim-or-read", "finish"):
        if name in children:  # a copy may skip Redis once it knows it is down
            assert children[name].status == "error"
            assert children[name].attributes["error.type"] in REDIS_FAILURE_KINDS
    assert request_log_line(copy, trace_id)["degraded"] is True


def test_a_wait_that_ends_with_the_originals_answer_holds_its_polls_and_says_done(
    traced: Callable[..., FunctionCopy], receiver: OtlpReceiver, redis_server: Any,
) -> None:
    from function.fingerprint import fingerprint
    from function.records import Done, InFlight, encode, redis_key
    from function.validation import order_request_from
    from support import ORDER

    copy = traced(IDEMPOTENCY_WAIT_SECONDS="10")
    request_fingerprint = fingerprint(order_request_from(ORDER).canonical())
    record = redis_key("alice", "finishes-soon")
    redis_server.client().set(record, encode(InFlight(request_fingerprint, "elsewhere")), px=60_000)
    trace_id, parent, traceparent = caller_context()
    client = Client(copy.url)
    calls_before = redis_script_calls(redis_server)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.create, key="finishes-soon", headers={"traceparent": traceparent})
        # Polling, and past its stale-claim check: its claim-or-read, five polls 5-80 ms
        # apart (155 ms), the check against PostgreSQL, then the seventh script call.
        wait_until(lambda: redis_script_calls(redis_server) >= calls_before + 7,
                   what="the duplicate to poll past its stale-claim check", timeout_seconds=30)
        body = json.dumps({"orderId": "o-1", "profileId": "alice"}, separators=(",", ":")).encode()
        redis_server.client().set(record, encode(Done(request_fingerprint, "o-1", body)), px=60_000)
        answer = waiting.result(timeout=30)

    assert answer.status_code == 201 and answer.headers["Idempotent-Replayed"] == "true"
    spans = receiver.trace(trace_id)
    server = server_span(spans)
    assert server.attributes["orders.outcome"] == "waited"
    wait = children_by_name(server, spans)["wait"]
    assert wait.attributes["orders.wait.ended"] == "done"
    polls = [span for span in wait.children(spans) if span.name == "claim-or-read"]
    assert polls and all(wait.start_ns <= poll.start_ns and poll.end_ns <= wait.end_ns for poll in polls)
    assert "find" in {span.name for span in wait.children(spans)}  # the one stale-claim check


# --- CloudEvents -------------------------------------------------------------------------

EVENT_DATA = {"productQuantity": 2, "profileId": "alice"}


def binary_event_with_traceparent_header(url: str, traceparent: str, event_id: str) -> requests.Response:
    """As Knative's Broker delivers: binary mode, the context in the W3C header."""
    return binary_event(Client(url), EVENT_DATA, event_id=event_id, headers={"traceparent": traceparent})


def binary_event_with_ce_traceparent_only(url: str, traceparent: str, event_id: str) -> requests.Response:
    """Binary mode, the context only in the event's distributed-tracing attribute."""
    return binary_event(Client(url), EVENT_DATA, event_id=event_id, traceparent=traceparent)


def structured_event_with_traceparent_attribute(url: str, traceparent: str, event_id: str) -> requests.Response:
    """The CloudEvents distributed-tracing extension: the context inside the event."""
    event = {
        "specversion": "1.0", "type": CREATE_EVENT, "source": "/shop/checkout", "id": event_id,
        "datacontenttype": "application/json", "traceparent": traceparent,
        "data": EVENT_DATA,
    }
    return requests.post(url + "/", data=json.dumps(event),
                         headers={"Content-Type": "application/cloudevents+json"}, timeout=30)


@pytest.mark.parametrize("send", [
    binary_event_with_traceparent_header, binary_event_with_ce_traceparent_only,
    structured_event_with_traceparent_attribute,
])
def test_an_event_continues_the_senders_trace_and_its_reply_event_carries_the_functions_context(
    traced: Callable[..., FunctionCopy], receiver: OtlpReceiver, db: Database,
    send: Callable[[str, str, str], requests.Response],
) -> None:
    copy = traced()
    trace_id, parent, traceparent = caller_context()
    event_id = str(uuid.uuid4())

    reply = send(copy.url, traceparent, event_id)

    assert reply.status_code == 200 and reply.headers["ce-type"] == "com.example.order.created"
    spans = receiver.trace(trace_id)
    server = server_span(spans)
    assert (server.name, server.parent_span_id) == ("POST /", parent)
    assert server.attributes | {
        "http.route": "/", "http.response.status_code": 200,
        "cloudevents.event_id": event_id, "cloudevents.event_source": "/shop/checkout",
        "cloudevents.event_type": CREATE_EVENT, "cloudevents.event_spec_version": "1.0",
        "orders.outcome": "created",
    } == server.attributes
    assert_claim_insert_finish_under(server, spans)
    # The reply event's distributed-tracing attribute: the Broker carries it on.
    version, reply_trace, reply_parent, flags = reply.headers["ce-traceparent"].split("-")
    assert (version, reply_trace, reply_parent) == ("00", trace_id, server.span_id)
    assert request_log_line(copy, trace_id)["span_id"] == server.span_id
    assert db.order_count() == 1


@pytest.mark.parametrize(("body", "status"), [(b"{" + b" " * 70_000 + b"}", 413), (b'{"specversion": ', 400)],
                         ids=["oversized", "broken-json"])
def test_a_structured_event_the_function_cannot_read_is_still_answered_and_traced(
    traced: Callable[..., FunctionCopy], receiver: OtlpReceiver, db: Database, body: bytes, status: int,
) -> None:
    # With no traceparent header the function reads a structured event's body for its
    # context first: what it cannot read gets the same answer as with tracing off.
    copy = traced()

    answer = requests.post(copy.url + "/", data=body, headers={"Content-Type": "application/cloudevents+json"}, timeout=30)

    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    spans = receiver.wait_for(lambda spans: any(s.kind == "server" for s in spans))
    server = server_span(spans)
    assert (server.name, server.attributes["http.response.status_code"], server.status) == ("POST /", status, "unset")
    assert db.order_count() == 0


def test_the_traces_endpoint_alone_turns_tracing_on_and_names_the_service_as_told(
    start_copies: Callable[..., list[FunctionCopy]], receiver: OtlpReceiver,
) -> None:
    (copy,) = start_copies(1, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.traces_url,
                           OTEL_SERVICE_NAME="orders-eu", **TRACED)
    trace_id, parent, traceparent = caller_context()

    assert Client(copy.url).create(headers={"traceparent": traceparent}).status_code == 201

    server = server_span(receiver.trace(trace_id))
    assert (server.parent_span_id, server.resource["service.name"]) == (parent, "orders-eu")


# --- tracing off -------------------------------------------------------------------------

def thread_names(copy: FunctionCopy) -> list[str]:
    """The Python thread names of every process of a copy (gunicorn's master and
    workers), as py-spy reads them from outside without changing the process."""
    assert copy.process is not None
    master = psutil.Process(copy.process.pid)
    names: list[str] = []
    for process in [master, *master.children(recursive=True)]:
        dump = subprocess.run([str(PY_SPY), "dump", "--pid", str(process.pid)],
                              capture_output=True, text=True, timeout=60)
        assert dump.returncode == 0, dump.stderr
        names += [line.split('"')[1] for line in dump.stdout.splitlines() if line.startswith("Thread ") and '"' in line]
    return names


needs_py_spy = pytest.mark.skipif(not PY_SPY.exists(), reason="py-spy missing: pip install -r demo/requirements.txt")


@needs_py_spy
def test_with_tracing_on_the_batch_exporter_thread_runs(traced: Callable[..., FunctionCopy]) -> None:
    # The control for the test below: the thread it looks for is found when it exists.
    copy = traced()
    Client(copy.url).create()

    assert any(name.startswith("OtelBatchSpan") for name in thread_names(copy))


@needs_py_spy
@pytest.mark.parametrize("tracing_off", [{}, {"OTEL_SDK_DISABLED": "true"}], ids=["no-endpoint", "sdk-disabled"])
def test_with_tracing_off_no_exporter_thread_runs_no_span_is_exported_and_no_trace_id_is_logged(
    start_copies: Callable[..., list[FunctionCopy]], receiver: OtlpReceiver, tracing_off: dict[str, str],
) -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint} if tracing_off else {}
    (copy,) = start_copies(1, **TRACED, **endpoint, **tracing_off)
    trace_id, _, traceparent = caller_context()

    assert Client(copy.url).create(headers={"traceparent": traceparent}).status_code == 201
    threads = thread_names(copy)
    copy.stop()  # a graceful stop flushes whatever an exporter still held

    assert not [name for name in threads if name.startswith("Otel")]
    assert receiver.spans == [] and receiver.export_requests == 0
    (line,) = [line for line in request_log_lines(copy) if line["route"] == "create"]
    assert "trace_id" not in line and "span_id" not in line


def test_with_tracing_off_a_worker_built_in_full_imports_nothing_of_opentelemetry_itself() -> None:
    # A fresh interpreter: this one has the receiver's opentelemetry-proto loaded. redis-py 8
    # imports parts of the OpenTelemetry API and metrics SDK by itself when they are
    # installed (its own optional metrics, off unless initialised); the function must load
    # nothing beyond those: no tracer SDK, no exporter, no propagator.
    probe = """
import asyncio, os, sys
os.environ.update(DATABASE_URL="postgresql://u:p@127.0.0.1:9/orders", REDIS_URL="redis://127.0.0.1:9/0",
                  AUTO_MIGRATE="false", LOG_LEVEL="error")
import redis.asyncio
by_redis = {name for name in sys.modules if name.startswith("opentelemetry")}
from functions_framework._function_registry import load_function_module
main, spec = load_function_module("function/main.py")  # as functions-framework loads it
spec.loader.exec_module(main)
async def build():
    return main.worker.for_this_process(main.SETTINGS)
running = asyncio.run(build())
assert running.tracing is None
print(sorted(name for name in sys.modules if name.startswith("opentelemetry") and name not in by_redis))
"""
    project = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
