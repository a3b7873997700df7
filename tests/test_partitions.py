"""Network partitions between a copy and its stores (devserver/netfaults.py): PostgreSQL,
Redis and the event sink black-holed (packets dropped: connects and established
connections hang) or reset. The function answers every request within a stated bound,
keeps one order per key, and is itself again soon after the heal.

Bounds (docs/operations.md, "Partitions and failovers"), with the tests' settings:
DATABASE_CONNECT_TIMEOUT_SECONDS=2, DATABASE_STATEMENT_TIMEOUT_SECONDS=2, REDIS_TIMEOUT_SECONDS=0.3.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import psutil
import pytest
import requests

from devserver.netfaults import NetworkFaults
from devserver.sink import EventSink
from devserver.waiting import wait_until
from support import Client, Database, metric

pytestmark = pytest.mark.multiprocess

CONNECT_SECONDS, STATEMENT_SECONDS, REDIS_SECONDS = 2.0, 2.0, 0.3
# The longest a request that needs PostgreSQL takes, whatever the network does: a wait for
# a pooled connection, a connect, the statement and the socket's extra second, and Redis's
# claim and release around them (docs/operations.md).
POSTGRES_BOUND_SECONDS = 2 * CONNECT_SECONDS + STATEMENT_SECONDS + 1 + 2 * REDIS_SECONDS
# After the heal: a connect under way finishes, a statement under way ends.
HEALED_BOUND_SECONDS = CONNECT_SECONDS + STATEMENT_SECONDS + 1
# A request while Redis does not answer: at most two Redis calls time out (claim, finish).
REDIS_BOUND_SECONDS = 2 * REDIS_SECONDS + 1
# Two shared cores, five engineers' tests: room for the machine, not for a hang.
SLACK_SECONDS = 5.0


@dataclass
class Traffic:
    """Clients creating orders, each key retried (503, 409) until a 201, as a client does."""

    url: str
    clients: int = 8
    answers: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds)
    created: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # key -> orderIds answered
    errors: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._client, args=(n,)) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        return threads

    def count(self, status: int) -> int:
        with self.lock:
            return sum(1 for answered, _ in self.answers if answered == status)

    def _client(self, number: int) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            key = f"partition-{number}-{uuid.uuid4()}"
            while True:  # this key until a 201, even after the stop: no key left half-tried
                sent = time.monotonic()
                try:
                    response = session.post(
                        self.url + "/orders", json={"productQuantity": 1}, timeout=POSTGRES_BOUND_SECONDS + 30,
                        headers={"X-Profile-Id": "partition", "Idempotency-Key": key},
                    )
                except requests.RequestException as exc:
                    with self.lock:
                        self.errors.append(f"{key}: {exc!r}")
                    return
                with self.lock:
                    self.answers.append((response.status_code, time.monotonic() - sent))
                if response.status_code == 201:
                    with self.lock:
                        self.created[key].append(response.json()["orderId"])
                    break
                if response.status_code not in (409, 503):
                    with self.lock:
                        self.errors.append(f"{key}: {response.status_code} {response.text[:200]}")
                    return
                time.sleep(0.05)


@pytest.mark.parametrize("fault", ["black hole", "reset"])
def test_postgresql_partitioned_under_creates_answers_within_the_bound_and_loses_no_key(
    fault: str, start_copies, db: Database, postgres, network_faults: NetworkFaults,
) -> None:
    name = "partitioned-copy"
    (copy,) = start_copies(1, DATABASE_URL=f"{postgres.url}?application_name={name}")
    client = Client(copy.url)
    traffic = Traffic(copy.url)
    threads = traffic.start()
    try:
        wait_until(lambda: traffic.count(201) >= 20, what="creates flowing", timeout_seconds=60)

        # A few seconds of silence (or resets) from PostgreSQL, held until every client has
        # met it twice: once on a pooled connection (the socket's timeout), once on a new one
        # (the connect's).
        with network_faults.black_holed(postgres.port) if fault == "black hole" else network_faults.resetting(postgres.port):
            wait_until(lambda: traffic.count(503) >= 2 * traffic.clients, what="503s while PostgreSQL is black-holed",
                       timeout_seconds=60, poll_seconds=0.1)
        healed = time.monotonic()
        wait_until(lambda: client.get("/healthz", profile=None).status_code == 200 and client.create().status_code == 201,
                   what="the copy healthy after the heal", timeout_seconds=60, poll_seconds=0.1)
        healthy_after = time.monotonic() - healed
        created_when_healthy = traffic.count(201)
        wait_until(lambda: traffic.count(201) >= created_when_healthy + 20 or bool(traffic.errors),
                   what="creates flowing again", timeout_seconds=60)
    finally:
        traffic.stopping.set()
        for thread in threads:
            thread.join()

    slowest = max(seconds for _, seconds in traffic.answers)
    print(f"PostgreSQL {fault}: slowest answer {slowest:.2f} s (bound {POSTGRES_BOUND_SECONDS:.1f} s), "
          f"healthy {healthy_after:.2f} s after the heal (bound {HEALED_BOUND_SECONDS:.1f} s), "
          f"{traffic.count(503)} 503s of {len(traffic.answers)} answers")
    assert traffic.errors == []
    assert {status for status, _ in traffic.answers} <= {201, 409, 503}
    assert slowest <= POSTGRES_BOUND_SECONDS + SLACK_SECONDS  # no request hung on the partition
    assert healthy_after <= HEALED_BOUND_SECONDS + SLACK_SECONDS
    # One order per key, and every 201 for a key named it.
    stored = db.execute("SELECT idempotency_key, CAST(order_id AS text) FROM orders WHERE profile_id = 'partition'")
    assert len(stored) == len({key for key, _ in stored}) == len(traffic.created)
    assert {key: [order_id] for key, order_id in stored} == {key: ids[:1] for key, ids in traffic.created.items()}
    assert all(len(set(ids)) == 1 for ids in traffic.created.values())
    # Connections that lived through the partition serve no 503 now.
    statuses = [client.create().status_code if n % 2 == 0 else client.get("/orders").status_code for n in range(12)]
    assert statuses == [201, 200] * 6
    # A reset tears down the copy's side only; the server's side of an idle connection would
    # linger (the test PostgreSQL has no keepalive of its own): end those.
    copy.kill()
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n", n=name)


@pytest.mark.parametrize("fault", ["black hole", "reset"])
def test_redis_partitioned_creates_and_replays_go_on_through_postgresql_and_redis_is_used_after_the_heal(
    fault: str, start_copies, db: Database, redis_server, network_faults: NetworkFaults,
) -> None:
    (copy,) = start_copies(1)
    client = Client(copy.url)
    before = client.create(key="before-partition")
    assert before.status_code == 201

    timed: list[tuple[str, int, float]] = []

    def timed_create(key: str) -> requests.Response:
        sent = time.monotonic()
        response = client.create(key=key)
        timed.append((key, response.status_code, time.monotonic() - sent))
        return response

    fault_on = network_faults.black_hole if fault == "black hole" else network_faults.reset
    fault_on(redis_server.port)
    try:
        created = [timed_create(f"during-{n}") for n in range(6)]
        replays = [timed_create(f"during-{n}") for n in range(6)] + [timed_create("before-partition")]
    finally:
        network_faults.heal()

    assert [response.status_code for response in created + replays] == [201] * 13
    assert [response.content for response in replays] == [response.content for response in created] + [before.content]
    assert all(response.headers.get("Idempotent-Replayed") == "true" for response in replays)
    assert db.order_count() == 7
    slowest = max(seconds for _, _, seconds in timed)
    print(f"Redis {fault}: slowest answer {slowest:.2f} s (bound {REDIS_BOUND_SECONDS:.1f} s)")
    assert slowest <= REDIS_BOUND_SECONDS + SLACK_SECONDS

    # After the heal Redis is used again: a new key's replay is served from it. Waited
    # for, a new key each time: a call that met a connection the partition left broken
    # starts the copy's cool-down, during which keys are decided by PostgreSQL alone and
    # their answers are not stored in Redis (seen once in make test after a reset).
    wait_until(lambda: client.get("/healthz", profile=None).json()["redis"] == "ok", what="Redis back",
               timeout_seconds=30)
    keys = (f"after-heal-{n}" for n in range(1_000_000))

    def a_replay_from_redis() -> bool:
        key = next(keys)
        assert client.create(key=key).status_code == 201
        replayed_from_redis = client.outcome_count("replayed-redis")
        assert client.create(key=key).status_code == 201
        return client.outcome_count("replayed-redis") == replayed_from_redis + 1

    wait_until(a_replay_from_redis, what="a replay served from Redis after the heal", timeout_seconds=30,
               poll_seconds=0.2)


def test_the_sink_black_holed_loses_no_event_bounds_every_post_and_publishing_resumes(
    start_copies, db: Database, workdir, network_faults: NetworkFaults,
) -> None:
    from function.events_out.outbox import POST_TIMEOUT_SECONDS

    sink = EventSink(workdir / "partition-sink").start()
    try:
        (copy,) = start_copies(1, K_SINK=sink.url, OUTBOX_RETRY_SECONDS="0.5")
        client = Client(copy.url)
        first = {client.create().json()["orderId"] for _ in range(3)}
        sink.wait_for(first, timeout_seconds=30)

        with network_faults.black_holed(sink.port):
            sent = time.monotonic()
            during = {client.create().json()["orderId"] for _ in range(10)}
            creating_seconds = time.monotonic() - sent
            # Every POST gives up at its timeout, counted; none waits on the silent sink for longer.
            wait_until(lambda: metric(client, "orders_outbox_publish_failures_total", '{kind="timeout"}') >= 1,
                       what="a POST timed out", timeout_seconds=POST_TIMEOUT_SECONDS + 30)
            assert sink.event_ids() & during == set()  # nothing got through the partition
        healed = time.monotonic()
        sink.wait_for(first | during, timeout_seconds=60)
        published_after = time.monotonic() - healed

        print(f"sink black hole: 10 creates in {creating_seconds:.2f} s, all published {published_after:.2f} s "
              "after the heal")
        assert creating_seconds <= 10 * (POSTGRES_BOUND_SECONDS + 1)  # creates never wait on the sink
        made = {row[0] for row in db.execute("SELECT CAST(order_id AS text) FROM orders")}
        assert sink.event_ids() == made  # nothing lost, nothing invented
        wait_until(lambda: db.execute("SELECT count(*) FROM outbox") == [[0]], what="the outbox empty",
                   timeout_seconds=30)
    finally:
        sink.stop()


def test_a_copys_connections_to_postgresql_redis_and_the_sink_carry_the_configured_keepalive(
    start_copies, db: Database, postgres, redis_server, workdir,
) -> None:
    """So an idle connection whose peer vanished without a reset is found within
    idle + interval x probes, not the system's two hours (`ss` shows each socket's timer)."""
    if shutil.which("ss") is None:
        pytest.skip("ss is not installed; install it with: apt-get install -y iproute2")
    sink = EventSink(workdir / "keepalive-sink").start()
    try:
        (copy,) = start_copies(1, K_SINK=sink.url, TCP_KEEPALIVE_IDLE_SECONDS="100")
        created = Client(copy.url).create()
        assert created.status_code == 201
        sink.wait_for({created.json()["orderId"]}, timeout_seconds=30)

        timers = keepalive_timers(copy)
        for port in (postgres.port, redis_server.port, sink.port):
            assert timers.get(port), f"no connection to port {port} with a keepalive timer: {timers}"
            # The setting, not the default (30 s) nor the system's 7200 s; a few seconds have passed.
            assert all(30 < seconds <= 100 for seconds in timers[port]), timers  # ss rounds to whole minutes
    finally:
        sink.stop()


def keepalive_timers(copy) -> dict[int, list[float]]:
    """Remote port -> seconds left on each keepalive timer of the copy's established connections."""
    processes = [psutil.Process(copy.process.pid), *psutil.Process(copy.process.pid).children(recursive=True)]
    local_ports = {connection.laddr.port for process in processes
                   for connection in process.net_connections(kind="tcp") if connection.raddr}
    listing = subprocess.run(["ss", "-tnoH", "state", "established"], capture_output=True, text=True, check=True)
    timers: dict[int, list[float]] = defaultdict(list)
    for line in listing.stdout.splitlines():
        fields = line.split()
        local, remote = fields[2], fields[3]
        found = re.search(r"timer:\(keepalive,([\d.]+)(ms|sec|min)", line)
        if int(local.rsplit(":", 1)[1]) in local_ports and found:
            value, unit = float(found.group(1)), found.group(2)
            timers[int(remote.rsplit(":", 1)[1])].append(value * {"ms": 0.001, "sec": 1, "min": 60}[unit])
    return timers
