"""Order events out: with K_SINK set, every order reaches a real HTTP sink (a process of
its own) at least once, under its orderId, whatever the sink, the copies or PostgreSQL do.
What one app shows runs in this process (tests/inprocess.py); copies racing, killed,
started later or behind PgBouncer are processes.

The copies here retry every second (OUTBOX_RETRY_SECONDS=1), so each wait below is
bounded by the outbox's own limits: a POST's timeout and lease, and the per-event
backoff, at most BACKOFF_LIMIT_PERIODS retry periods.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from devserver.copies import FunctionCopy, start_together
from devserver.pgbouncer import PgBouncerServer
from devserver.servers import PostgresServer
from devserver.sink import EventSink
from devserver.waiting import wait_until
from function.events_out.outbox import BACKOFF_LIMIT_PERIODS, LEASE_SECONDS, POST_TIMEOUT_SECONDS
from function.settings import ConfigError, Settings
from scaleout import acknowledged, storm
from support import ORDER, Client, Database, binary_event, sample
from tracing.receiver import OtlpReceiver

pytestmark = pytest.mark.long

RETRY_SECONDS = 1.0
# The longest an event may wait after the sink is back: its backoff (at most
# BACKOFF_LIMIT_PERIODS periods), the next sweep, a lease still running, and one POST.
# Plus slack for two shared cores starting copies and PostgreSQL at the same time.
ARRIVAL_BOUND_SECONDS = (BACKOFF_LIMIT_PERIODS + 1) * RETRY_SECONDS + LEASE_SECONDS + POST_TIMEOUT_SECONDS + 10
OVERRIDES = {"extensions": {"team": "shop", "region": "eu1"}}
PING = "dev.knative.sources.ping"


@pytest.fixture(scope="module")
def sink_process(workdir: Path) -> Iterator[EventSink]:
    sink = EventSink(workdir / "event-sink").start()
    yield sink
    sink.stop()


@pytest.fixture
def sink(sink_process: EventSink, db: Database) -> Iterator[EventSink]:
    """The receiver answering 202, with an empty record; running again after the test."""
    if not sink_process.running:
        sink_process.start()
    sink_process.answer(202)
    sink_process.forget()
    yield sink_process
    if not sink_process.running:
        sink_process.start()
    sink_process.answer(202)


@pytest.fixture
def publishing(
    start_copies: Callable[..., list[FunctionCopy]], sink: EventSink,
) -> Callable[..., list[FunctionCopy]]:
    """Start copies that publish to the sink (extra env as keywords)."""
    def start(count: int = 1, **env: str) -> list[FunctionCopy]:
        return start_copies(count, **{"K_SINK": sink.url, "OUTBOX_RETRY_SECONDS": str(RETRY_SECONDS), **env})

    return start


@pytest.fixture
def publishing_here(serve_in_process: Callable[..., Client], sink: EventSink) -> Callable[..., Client]:
    """The in-process app publishing to the sink (extra env as keywords): its relay sweeps
    on the app's event loop as a copy's does, from its lifespan (tests/inprocess.py)."""
    def serve(**env: str) -> Client:
        return serve_in_process(**{"K_SINK": sink.url, "OUTBOX_RETRY_SECONDS": str(RETRY_SECONDS), **env})

    return serve


def pending(db: Database) -> int:
    return int(db.execute("SELECT count(*) FROM outbox")[0][0])


def create_orders(client: Client, count: int, profile: str = "alice") -> set[str]:
    """`count` new orders; a 503 (PostgreSQL restarting) is retried with the same key."""
    ids = set()
    for _ in range(count):
        key = str(uuid.uuid4())
        response = client.create(key=key, profile=profile)
        while response.status_code == 503:
            response = client.create(key=key, profile=profile)
        assert response.status_code == 201, response.text
        ids.add(response.json()["orderId"])
    return ids


def ping(client: Client) -> requests.Response:
    return binary_event(client, "", type_=PING, source="/apis/v1/namespaces/orders/pingsources/orders-outbox")


def failures(client: Client, kind: str) -> float:
    return sample(client.get("/metrics", profile=None).text, "orders_outbox_publish_failures_total", f'{{kind="{kind}"}}')


# --- what is published ---------------------------------------------------------------


def test_every_order_by_http_by_event_and_without_a_key_reaches_the_sink_once_as_get_shows_it(
    publishing_here: Callable[..., Client], sink: EventSink, db: Database,
) -> None:
    client = publishing_here(IDEMPOTENCY_KEY_REQUIRED="false", K_CE_OVERRIDES=json.dumps(OVERRIDES))

    by_http = client.create(key="http-key")
    replayed = client.create(key="http-key")
    without_key = client.create(key=None)
    by_event = binary_event(client, {"productQuantity": 3, "profileId": "alice"}, event_id="evt-out-1")
    redelivered = binary_event(client, {"productQuantity": 3, "profileId": "alice"}, event_id="evt-out-1")
    # Not orders: a malformed body, a key reused with another body, a read, a list.
    assert client.create({"productQuantity": "many"}).status_code == 400
    assert client.create({"productQuantity": 9}, key="http-key").status_code == 422
    assert client.get("/orders").status_code == 200

    # With K_SINK set an order event is acknowledged, not answered with an event.
    assert by_event.status_code == redelivered.status_code == 202
    assert "ce-type" not in by_event.headers and by_event.content == b""
    assert redelivered.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == by_http.json()
    event_order = next(o for o in client.get("/orders").json()["orders"] if o["productQuantity"] == 3)
    orders = {by_http.json()["orderId"], without_key.json()["orderId"], event_order["orderId"]}
    sink.wait_for(orders, timeout_seconds=ARRIVAL_BOUND_SECONDS)
    wait_until(lambda: pending(db) == 0, what="an empty outbox", timeout_seconds=ARRIVAL_BOUND_SECONDS)

    deliveries = sink.deliveries()
    assert sink.event_ids() == orders and len(deliveries) == 3  # one event id per order, nothing else
    for delivery in deliveries:
        order_id = delivery["id"]
        shown = client.get(f"/orders/{order_id}")
        assert delivery["data"].encode() == shown.content
        assert delivery["headers"] == {
            "ce-specversion": "1.0", "ce-type": "com.example.order.created", "ce-source": "/orders",
            "ce-id": order_id, "ce-time": shown.json()["createdAt"], "content-type": "application/json",
            "ce-team": "shop", "ce-region": "eu1",
        }


def test_with_k_sink_unset_nothing_is_recorded_or_sent_and_an_event_gets_its_reply_as_before(
    serve_in_process: Callable[..., Client], sink: EventSink, db: Database,
) -> None:
    client = serve_in_process()
    published_before = sample(client.get("/metrics", profile=None).text, "orders_outbox_published_total")

    create_orders(client, 3)
    reply = binary_event(client, {"productQuantity": 1, "profileId": "alice"})
    pinged = ping(client)

    assert reply.status_code == 200 and reply.headers["ce-type"] == "com.example.order.created"
    assert reply.headers["ce-id"] == reply.json()["orderId"]
    assert pinged.status_code == 202
    assert db.order_count() == 4
    assert pending(db) == 0  # nothing recorded, so nothing can ever be sent
    assert sink.deliveries() == []
    published = sample(client.get("/metrics", profile=None).text, "orders_outbox_published_total")
    assert published == published_before


@pytest.mark.multiprocess
def test_a_duplicate_storm_over_two_copies_announces_each_order_once(
    publishing: Callable[..., list[FunctionCopy]], sink: EventSink, db: Database,
) -> None:
    copies = publishing(2)

    result = storm([copy.url for copy in copies], keys=30, duplicates=6)

    orders = {str(row[0]) for row in db.execute("SELECT order_id FROM orders")}
    assert len(orders) == 30 and set(acknowledged(result).values()) == orders
    sink.wait_for(orders, timeout_seconds=ARRIVAL_BOUND_SECONDS)
    wait_until(lambda: pending(db) == 0, what="an empty outbox", timeout_seconds=ARRIVAL_BOUND_SECONDS)
    assert sink.event_ids() == orders and len(sink.deliveries()) == 30


# --- the sink failing ------------------------------------------------------------------


@pytest.mark.parametrize("trouble", ["503", "hanging", "gone"])
def test_orders_made_while_the_sink_fails_all_arrive_once_it_is_back(
    publishing_here: Callable[..., Client], sink: EventSink, db: Database, trouble: str,
) -> None:
    client = publishing_here()
    kind = {"503": "sink-error", "hanging": "timeout", "gone": "connection"}[trouble]
    failed_before = failures(client, kind)
    if trouble == "503":
        sink.answer(503)
    elif trouble == "hanging":
        sink.answer(hang=True)
    else:
        sink.stop()

    ids = create_orders(client, 8)  # answered at once: publishing happens after the answer
    wait_until(lambda: failures(client, kind) >= failed_before + 8, what=f"8 failed publishes of kind {kind}",
               timeout_seconds=ARRIVAL_BOUND_SECONDS)
    wait_until(lambda: sample(client.get("/metrics", profile=None).text, "orders_outbox_pending") == 8,
               what="the pending gauge at 8", timeout_seconds=ARRIVAL_BOUND_SECONDS)
    assert pending(db) == 8
    if trouble == "gone":
        sink.start()
    else:
        sink.answer(202)

    sink.wait_for(ids, timeout_seconds=ARRIVAL_BOUND_SECONDS)
    wait_until(lambda: pending(db) == 0, what="an empty outbox", timeout_seconds=ARRIVAL_BOUND_SECONDS)
    assert sink.event_ids() == ids


def test_a_poison_event_does_not_hold_back_the_others(
    publishing_here: Callable[..., Client], sink: EventSink, db: Database,
) -> None:
    client = publishing_here()
    rejected_before = failures(client, "rejected")
    sink.answer(400)  # refused: every event is poison for now
    stuck = create_orders(client, 3, profile="poison")
    wait_until(lambda: failures(client, "rejected") >= rejected_before + 6, what="the poison events retried",
               timeout_seconds=ARRIVAL_BOUND_SECONDS)
    backed_off = db.execute("SELECT min(next_attempt_at - now()) > interval '0' FROM outbox")[0][0]

    assert backed_off  # each waits its own backoff; none is due at once again
    sink.answer(202)
    fresh = create_orders(client, 3)
    sink.wait_for(fresh, timeout_seconds=ARRIVAL_BOUND_SECONDS)
    sink.wait_for(stuck, timeout_seconds=ARRIVAL_BOUND_SECONDS)


# --- copies coming and going -----------------------------------------------------------


@pytest.mark.multiprocess
def test_a_copy_killed_with_events_committed_but_not_sent_leaves_them_to_another_copy(
    publishing: Callable[..., list[FunctionCopy]], sink: EventSink, db: Database,
) -> None:
    maker, survivor = publishing(2)
    sink.answer(hang=True)  # the maker's POSTs are under way, unanswered, when it dies
    ids = create_orders(Client(maker.url), 10)

    maker.kill()
    assert pending(db) == 10
    sink.answer(202)

    sink.wait_for(ids, timeout_seconds=ARRIVAL_BOUND_SECONDS)
    assert survivor.running


@pytest.mark.multiprocess
def test_a_copy_started_after_every_copy_stopped_publishes_what_is_pending_with_no_traffic(
    publishing: Callable[..., list[FunctionCopy]], sink: EventSink, db: Database,
) -> None:
    (maker,) = publishing()
    sink.stop()
    ids = create_orders(Client(maker.url), 5)
    maker.stop()
    assert pending(db) == 5
    sink.start()
    wait_until(lambda: db.execute("SELECT bool_and(next_attempt_at <= now()) FROM outbox")[0][0],
               what="the pending events due", timeout_seconds=ARRIVAL_BOUND_SECONDS)

    # A retry period of an hour: only the start-up sweep can send them in time.
    publishing(OUTBOX_RETRY_SECONDS="3600")

    sink.wait_for(ids, timeout_seconds=ARRIVAL_BOUND_SECONDS)
    wait_until(lambda: pending(db) == 0, what="an empty outbox", timeout_seconds=ARRIVAL_BOUND_SECONDS)


@pytest.mark.multiprocess
def test_a_ping_event_publishes_what_is_pending_and_is_answered_2xx(
    publishing: Callable[..., list[FunctionCopy]], sink: EventSink, db: Database,
) -> None:
    # The woken copy sweeps once an hour by itself, and had nothing to do at its start.
    (woken,) = publishing(OUTBOX_RETRY_SECONDS="3600")
    (maker,) = publishing()
    sink.stop()
    ids = create_orders(Client(maker.url), 5)
    maker.kill()
    sink.start()
    wait_until(lambda: db.execute("SELECT bool_and(next_attempt_at <= now()) FROM outbox")[0][0],
               what="the pending events due", timeout_seconds=ARRIVAL_BOUND_SECONDS)
    assert sink.event_ids() == set()

    answer = ping(Client(woken.url))

    assert answer.status_code == 202
    assert sink.event_ids() == ids  # published before the ping was answered
    assert pending(db) == 0


@pytest.mark.multiprocess
def test_copies_sweeping_at_once_never_post_one_pending_event_at_the_same_moment(
    publishing: Callable[..., list[FunctionCopy]], sink: EventSink, db: Database,
) -> None:
    (maker,) = publishing()
    sink.stop()
    ids = create_orders(Client(maker.url), 80)
    sink.start()
    sink.answer(202, delay_seconds=0.3)  # slow: each POST stays open while others sweep

    publishing(3)

    sink.wait_for(ids, timeout_seconds=ARRIVAL_BOUND_SECONDS + 30)
    assert sink.overlaps() == []


# --- traces --------------------------------------------------------------------------


@pytest.mark.multiprocess
def test_each_publish_is_a_span_under_the_request_that_made_the_order_or_the_sweep_that_retried_it(
    publishing: Callable[..., list[FunctionCopy]], sink: EventSink, db: Database,
) -> None:
    with OtlpReceiver() as receiver:
        (copy,) = publishing(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="50")
        client = Client(copy.url)
        trace_id = uuid.uuid4().hex
        sink.answer(503)

        order_id = client.create(headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}).json()["orderId"]
        wait_until(lambda: failures(client, "sink-error") >= 1, what="a refused publish", timeout_seconds=30)
        sink.answer(202)
        sink.wait_for({order_id}, timeout_seconds=ARRIVAL_BOUND_SECONDS)

        spans = receiver.wait_for(lambda spans: any(s.name == "outbox-sweep" and s.children(spans) for s in spans))
    server = next(s for s in spans if s.kind == "server" and s.trace_id == trace_id)
    (first,) = [s for s in server.children(spans) if s.name == "publish"]
    assert (first.kind, first.status, first.attributes["error.type"]) == ("client", "error", "sink-error")
    assert first.attributes["cloudevents.event_id"] == order_id
    sweep = next(s for s in spans if s.name == "outbox-sweep" and s.children(spans))
    (retried,) = sweep.children(spans)
    assert (retried.name, retried.status, retried.attributes["cloudevents.event_id"]) == ("publish", "unset", order_id)
    # The sink (the Broker) is told the publish span as the event's parent. At least once:
    # under load an event can arrive twice (a POST answered after its timeout, or a
    # DELETE that failed, leaves the row to a later sweep; seen once in make test), each
    # time under its own publish span.
    deliveries = sink.deliveries()
    assert {delivery["id"] for delivery in deliveries} == {order_id}
    parents = [delivery["headers"]["traceparent"].split("-")[1:3] for delivery in deliveries]
    assert [retried.trace_id, retried.span_id] in parents


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.mark.multiprocess
def test_postgresql_restarted_while_events_are_published_loses_none(
    publishing: Callable[..., list[FunctionCopy]], sink: EventSink, db: Database, postgres: PostgresServer,
) -> None:
    (copy,) = publishing()
    client = Client(copy.url)
    sink.answer(202, delay_seconds=1.0)  # the POSTs are under way while PostgreSQL goes
    ids = create_orders(client, 10)

    postgres.restart()
    ids |= create_orders(client, 5, profile="after")

    sink.answer(202)
    sink.wait_for(ids, timeout_seconds=ARRIVAL_BOUND_SECONDS)
    wait_until(lambda: pending(db) == 0, what="an empty outbox", timeout_seconds=ARRIVAL_BOUND_SECONDS)


@pytest.mark.multiprocess
def test_events_are_recorded_and_published_through_a_transaction_mode_pgbouncer(
    pgbouncer: PgBouncerServer, small_postgres: PostgresServer, sink: EventSink,
    base_env: dict[str, str], workdir: Path,
) -> None:
    env = {**base_env, "DATABASE_URL": pgbouncer.url, "DATABASE_POOLING": "transaction",
           "K_SINK": sink.url, "OUTBOX_RETRY_SECONDS": str(RETRY_SECONDS)}
    copies = start_together(env, [workdir / f"pgbouncer-outbox-copy-{n}.log" for n in range(2)])
    try:
        sink.stop()
        client = Client(copies[0].url)
        ids = create_orders(client, 6, profile=f"pooled-{uuid.uuid4().hex[:8]}")
        binary_event(client, {"productQuantity": 1, "profileId": "pooled"}, event_id=str(uuid.uuid4()))
        event_order = Client(copies[1].url).get("/orders", profile="pooled").json()["orders"][0]["orderId"]
        sink.start()

        sink.wait_for(ids | {event_order}, timeout_seconds=ARRIVAL_BOUND_SECONDS)
        assert sink.overlaps() == []
    finally:
        for copy in copies:
            copy.kill()


# --- settings --------------------------------------------------------------------------

URLS = {"DATABASE_URL": "postgresql://u:secret@db:5432/orders", "REDIS_URL": "redis://r:6379/0"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("K_SINK", "broker.orders.svc"),
        ("K_SINK", "ftp://broker/"),
        ("K_SINK", "http://broker:port/"),
        ("K_CE_OVERRIDES", "{not json"),
        ("K_CE_OVERRIDES", '{"extensions": ["team"]}'),
        ("K_CE_OVERRIDES", '{"extensions": {"Team": "shop"}}'),
        ("K_CE_OVERRIDES", '{"extensions": {"team": 7}}'),
        ("K_CE_OVERRIDES", '{"extensions": {"id": "mine"}}'),
        ("K_CE_OVERRIDES", '{"extensions": {"team": "line\\nbreak"}}'),
        ("OUTBOX_RETRY_SECONDS", "often"),
        ("OUTBOX_RETRY_SECONDS", "-3"),
        ("OUTBOX_RETRY_SECONDS", "nan"),
    ],
)
def test_a_malformed_publishing_setting_stops_start_up_naming_the_variable_not_its_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**URLS, "K_SINK": "http://broker/", name: value})
    assert name in str(raised.value)
    assert (len(value) < 3 or value not in str(raised.value)) and "secret" not in str(raised.value)


def test_publishing_is_off_without_k_sink_and_its_settings_have_the_contracts_defaults() -> None:
    settings = Settings.from_env(URLS)
    assert (settings.k_sink, settings.k_ce_overrides, settings.outbox_retry_seconds) == (None, (), 5.0)
    on = Settings.from_env({**URLS, "K_SINK": "http://broker-ingress.knative-eventing.svc/orders/default",
                            "K_CE_OVERRIDES": json.dumps(OVERRIDES)})
    assert on.k_ce_overrides == (("region", "eu1"), ("team", "shop"))
    assert "broker-ingress" not in repr(on)


@pytest.mark.multiprocess
def test_a_copy_with_malformed_overrides_does_not_start_and_says_which_variable(
    base_env: dict[str, str], tmp_path: Path,
) -> None:
    # Its own folder: a refused start is this test's expected result, not a crash for the
    # module's log watch to report.
    log = tmp_path / "bad-overrides-copy.log"
    copy = FunctionCopy({**base_env, "K_SINK": "http://127.0.0.1:9/", "K_CE_OVERRIDES": "{oops"}, log=log)
    copy.start(wait=False)
    assert copy.process is not None
    copy.process.wait(timeout=60)
    assert copy.process.returncode != 0
    assert re.search(r"configuration error: K_CE_OVERRIDES", log.read_text())
