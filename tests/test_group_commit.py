"""Group commit (issue 16): creates queued for PostgreSQL share one INSERT, and each request
still gets exactly its own answer, whatever happens to the batch it was in.

A batch is made to happen, not hoped for: PostgreSQL is paused (SIGSTOP) while one create
holds the only turn a copy with DATABASE_POOL_SIZE=2 gives create batches, so the creates
sent meanwhile queue together; orders_db_pool_waiting_requests says when all are queued.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Callable

import pytest
import requests

from support import ORDER, Client, Database, accepts_connections, assert_problem, idempotency_records, sample
from devserver.copies import FunctionCopy
from devserver.servers import free_port
from devserver.waiting import wait_until
from loadgen.exposition import scrape

pytestmark = pytest.mark.multiprocess

# A pool of 2 runs one create batch at a time; long waits so nothing gives up while paused.
BATCHING = {"DATABASE_POOL_SIZE": "2", "DATABASE_CONNECT_TIMEOUT_SECONDS": "20",
            "DATABASE_STATEMENT_TIMEOUT_SECONDS": "20"}


def in_the_background(work: Callable[[], requests.Response]) -> tuple[threading.Thread, list[Any]]:
    """`work()` in a thread; its answer (or the exception it raised) lands in the list."""
    answers: list[Any] = []

    def run() -> None:
        try:
            answers.append(work())
        except requests.RequestException as exc:
            answers.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


def queue_behind_a_paused_batch(
    copy: FunctionCopy, postgres: Any, sends: list[Callable[[], requests.Response]],
) -> list[tuple[threading.Thread, list[Any]]]:
    """PostgreSQL paused with one create's batch on it, then `sends` all queued together
    for the next batch (PostgreSQL still paused when this returns)."""
    Client(copy.url).create(key="warm-up")  # the pool has met PostgreSQL
    postgres.pause()
    blocker = in_the_background(lambda: Client(copy.url).create(key="blocker"))
    wait_until(lambda: sample(scrape(copy.url), "orders_db_pool_connections_in_use") == 1,
               what="the blocker's batch on the paused PostgreSQL", timeout_seconds=10)
    started = [in_the_background(send) for send in sends]
    wait_until(lambda: sample(scrape(copy.url), "orders_db_pool_waiting_requests") == len(sends),
               what="every create queued for the next batch", timeout_seconds=10)
    return [blocker, *started]


def answers_of(started: list[tuple[threading.Thread, list[Any]]]) -> list[Any]:
    for thread, _ in started:
        thread.join(timeout=60)
    return [answers[0] for _, answers in started]


def batch_sizes(copy: FunctionCopy) -> tuple[float, float]:
    """(INSERTs, creates they carried) so far."""
    text = scrape(copy.url)
    return sample(text, "orders_insert_batch_creates_count"), sample(text, "orders_insert_batch_creates_sum")


def test_one_at_a_time_each_create_is_its_own_insert_and_queued_creates_share_one(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any,
) -> None:
    (copy,) = start_copies(1, **BATCHING)
    client = Client(copy.url)

    for n in range(5):  # nobody queued: each runs alone at once
        assert client.create(key=f"alone-{n}").status_code == 201
    alone = batch_sizes(copy)
    started = queue_behind_a_paused_batch(copy, postgres, [
        lambda n=n: Client(copy.url).create(key=f"together-{n}") for n in range(10)  # type: ignore[misc]
    ])
    postgres.resume()
    answers = answers_of(started)

    assert alone == (5.0, 5.0)  # five creates, one INSERT each
    assert [a.status_code for a in answers] == [201] * 11
    assert len({a.json()["orderId"] for a in answers}) == 11
    statements, rows = batch_sizes(copy)
    assert (statements - alone[0], rows - alone[1]) == (3, 12)  # the warm-up, the blocker, then ten in one
    assert db.order_count() == 17


def test_with_group_commit_off_queued_creates_each_get_their_own_insert(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any,
) -> None:
    (copy,) = start_copies(1, **{**BATCHING, "DATABASE_POOL_SIZE": "1", "DATABASE_BATCH_MAX": "1"})
    started = queue_behind_a_paused_batch(copy, postgres, [
        lambda n=n: Client(copy.url).create(key=f"k{n}") for n in range(4)  # type: ignore[misc]
    ])
    postgres.resume()
    answers = answers_of(started)

    assert [a.status_code for a in answers] == [201] * 5
    assert batch_sizes(copy) == (6.0, 6.0)  # the warm-up, the blocker and four: all alone


def test_the_finishes_of_one_batch_reach_redis_as_one_pipeline_each_with_its_own_answer(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any, redis_server: Any,
) -> None:
    (copy,) = start_copies(1, **BATCHING)
    started = queue_behind_a_paused_batch(copy, postgres, [
        lambda n=n: Client(copy.url).create(key=f"piped-{n}") for n in range(10)  # type: ignore[misc]
    ])
    before = redis_server.client().info("stats")
    postgres.resume()  # the blocker finishes, then the ten: their finishes come in one loop turn
    answers = answers_of(started)
    after = redis_server.client().info("stats")

    assert [a.status_code for a in answers] == [201] * 11
    commands = after["total_commands_processed"] - before["total_commands_processed"]
    reads = after["total_reads_processed"] - before["total_reads_processed"]
    assert commands >= 11  # the eleven finishes (and the INFO)...
    assert reads < 10, (reads, commands)  # ...reach Redis in fewer reads than the batch has finishes
    for n, answer in enumerate(answers[1:]):  # each key's record holds its own answer
        replay = Client(copy.url).create(key=f"piped-{n}")
        assert replay.headers.get("Idempotent-Replayed") == "true" and replay.content == answer.content
    assert Client(copy.url).outcome_count("replayed-redis") == 10


def test_duplicates_that_share_a_batch_with_redis_down_get_one_order_per_key(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any,
) -> None:
    (copy,) = start_copies(1, **BATCHING, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                           IDEMPOTENCY_KEY_REQUIRED="false")
    other = {"productId": "sku-other", "productQuantity": 9}
    sends: list[Callable[[], requests.Response]] = [
        *(lambda: Client(copy.url).create(key="a") for _ in range(4)),
        *(lambda: Client(copy.url).create(key="b") for _ in range(3)),
        lambda: Client(copy.url).create(other, key="a"),  # same key, another body: 422
        *(lambda: Client(copy.url).create(key=None) for _ in range(3)),  # no key: never deduplicated
    ]
    started = queue_behind_a_paused_batch(copy, postgres, sends)
    postgres.resume()
    answers = answers_of(started)[1:]

    a, b, changed, unkeyed = answers[:4], answers[4:7], answers[7], answers[8:]
    assert [r.status_code for r in a + b + unkeyed] == [201] * 10
    for duplicates in (a, b):
        assert len({r.content for r in duplicates}) == 1  # one order, the same bytes for each
        assert Counter(r.headers.get("Idempotent-Replayed") for r in duplicates) == {
            None: 1, "true": len(duplicates) - 1}
    assert_problem(changed, 422)
    assert len({r.json()["orderId"] for r in unkeyed}) == 3
    assert db.execute("SELECT idempotency_key, count(*) FROM orders WHERE idempotency_key IN ('a', 'b')"
                      " GROUP BY 1 ORDER BY 1") == [["a", 1], ["b", 1]]
    assert db.execute("SELECT count(*) FROM orders WHERE idempotency_key IS NULL") == [[3]]
    statements, rows = batch_sizes(copy)
    assert rows - statements >= 10  # eleven requests went in one INSERT


def test_a_storm_of_duplicates_with_redis_down_makes_one_order_per_key(
    start_copies: Callable[..., list[FunctionCopy]], db: Database,
) -> None:
    (copy,) = start_copies(1, DATABASE_POOL_SIZE="2", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    keys, duplicates = 30, 6
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def fire(key: str) -> None:
        response = Client(copy.url).create(key=key)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=fire, args=(f"storm-{k}",)) for k in range(keys) for _ in range(duplicates)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [r.status_code for r in answers] == [201] * keys * duplicates
    stored = dict(db.execute("SELECT idempotency_key, count(*) FROM orders GROUP BY 1"))
    assert stored == {f"storm-{k}": 1 for k in range(keys)}
    assert len({r.json()["orderId"] for r in answers}) == keys  # every answer names its key's one order


def test_a_batch_cut_by_a_postgresql_restart_fails_each_request_alone_and_retries_make_one_order_each(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any, redis_server: Any,
) -> None:
    (copy,) = start_copies(1, **BATCHING)
    started = queue_behind_a_paused_batch(copy, postgres, [
        lambda n=n: Client(copy.url).create(key=f"cut-{n}") for n in range(6)  # type: ignore[misc]
    ])
    postgres.restart()  # the paused batches' connections are dropped under them
    answers = answers_of(started)

    assert {a.status_code for a in answers} <= {201, 503}  # each as it would alone: never a 500
    for answer in answers:
        if answer.status_code == 503:
            assert_problem(answer, 503, "retry")
    assert not [k for k in idempotency_records(redis_server)
                if (redis_server.client().get(k) or b"").startswith(b"F")]  # every claim released
    keys = ["blocker"] + [f"cut-{n}" for n in range(6)]
    for key, first in zip(keys, answers):
        retried = Client(copy.url).create(key=key)
        assert retried.status_code == 201
        if first.status_code == 201:
            assert retried.content == first.content
    assert db.execute("SELECT count(DISTINCT idempotency_key), count(*) FROM orders WHERE idempotency_key"
                      " <> 'warm-up'") == [[7, 7]]


def test_a_batch_on_a_hung_postgresql_answers_each_request_503_in_bounded_time(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any, redis_server: Any,
) -> None:
    (copy,) = start_copies(1, **{**BATCHING, "DATABASE_STATEMENT_TIMEOUT_SECONDS": "2",
                                 "DATABASE_CONNECT_TIMEOUT_SECONDS": "4"})
    started = queue_behind_a_paused_batch(copy, postgres, [
        lambda n=n: Client(copy.url).create(key=f"hung-{n}") for n in range(5)  # type: ignore[misc]
    ])
    answers = answers_of(started)  # PostgreSQL still paused: the socket gives up after 2 + 1 s
    postgres.resume()

    for answer in answers:
        assert_problem(answer, 503, "retry")
        assert int(answer.headers["Retry-After"]) >= 1
    assert not [k for k in idempotency_records(redis_server)
                if (redis_server.client().get(k) or b"").startswith(b"F")]  # every claim released
    keys = ["blocker"] + [f"hung-{n}" for n in range(5)]
    for key in keys:  # a statement PostgreSQL ran after resuming is found, never made twice
        assert Client(copy.url).create(key=key).status_code == 201
    assert db.execute("SELECT count(DISTINCT idempotency_key), count(*) FROM orders WHERE idempotency_key"
                      " <> 'warm-up'") == [[6, 6]]


def test_a_row_held_by_another_transaction_fails_only_its_own_request_not_its_batch(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any,
) -> None:
    (copy,) = start_copies(1, **{**BATCHING, "DATABASE_STATEMENT_TIMEOUT_SECONDS": "1.5"})
    Client(copy.url).create(key="warm-up")
    holder = postgres.connect()  # a transaction that hangs holding two keys' rows
    holder.run("BEGIN")
    holder.run("INSERT INTO orders (profile_id, idempotency_key, fingerprint, product_quantity)"
               " VALUES ('alice', 'held-1', 'f', 1), ('alice', 'held-2', 'f', 1)")
    try:
        blocker = in_the_background(lambda: Client(copy.url).create(key="held-1"))
        wait_until(lambda: sample(scrape(copy.url), "orders_db_pool_connections_in_use") == 1,
                   what="the first batch waiting for the held row", timeout_seconds=10)
        sends = [lambda: Client(copy.url).create(key="held-2"),
                 *(lambda n=n: Client(copy.url).create(key=f"free-{n}") for n in range(4))]
        started = [in_the_background(send) for send in sends]
        wait_until(lambda: sample(scrape(copy.url), "orders_db_pool_waiting_requests") == len(sends),
                   what="every create queued for the next batch", timeout_seconds=10)
        answers = answers_of([blocker, *started])
    finally:
        holder.run("ROLLBACK")
        holder.close()

    assert_problem(answers[0], 503, "retry")  # each held row's request fails, as it would alone...
    assert_problem(answers[1], 503, "retry")
    assert [a.status_code for a in answers[2:]] == [201] * 4  # ...and no other request with it
    assert Client(copy.url).create(key="held-2").status_code == 201  # free again: made now
    assert db.execute("SELECT count(*) FROM orders WHERE idempotency_key LIKE 'free-%' OR"
                      " idempotency_key = 'held-2'") == [[5]]


def test_a_client_that_disconnects_while_its_batch_runs_does_not_cancel_the_others(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any,
) -> None:
    (copy,) = start_copies(1, **BATCHING)
    sends: list[Callable[[], requests.Response]] = [
        lambda: Client(copy.url).create(key="impatient", timeout=0.5),
        *(lambda n=n: Client(copy.url).create(key=f"patient-{n}") for n in range(4)),
    ]
    started = queue_behind_a_paused_batch(copy, postgres, sends)
    impatient_thread, impatient = started[1]
    impatient_thread.join(timeout=10)  # it gave up and hung up while PostgreSQL is paused
    postgres.resume()
    answers = answers_of(started)

    assert isinstance(impatient[0], requests.Timeout)
    assert [a.status_code for i, a in enumerate(answers) if i != 1] == [201] * 5
    retries: list[requests.Response] = []

    def retried_past_the_original() -> bool:
        retries.append(Client(copy.url).create(key="impatient"))
        return retries[-1].status_code != 409

    wait_until(retried_past_the_original,
               what="a retry past the in-flight original (never stuck for the lease)", timeout_seconds=10)
    assert retries[-1].status_code == 201
    assert db.execute("SELECT count(*) FROM orders WHERE idempotency_key = 'impatient'") == [[1]]


def test_sigterm_with_a_batch_in_flight_lets_every_request_of_it_finish(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: Any,
) -> None:
    stopping, other = start_copies(2, **BATCHING)
    started = queue_behind_a_paused_batch(stopping, postgres, [
        lambda n=n: Client(stopping.url).create(key=f"draining-{n}") for n in range(6)  # type: ignore[misc]
    ])
    stopping.signal(15)  # SIGTERM, as the kubelet sends, with both batches waiting on PostgreSQL
    wait_until(lambda: not accepts_connections(stopping.url), what="the copy to stop accepting", timeout_seconds=30)
    postgres.resume()
    answers = answers_of(started)
    assert stopping.process is not None
    exit_code = stopping.process.wait(timeout=30)

    assert [a.status_code for a in answers] == [201] * 7
    assert exit_code == 0
    for n, answer in enumerate(answers[1:]):
        assert Client(other.url).create(key=f"draining-{n}").content == answer.content
    assert db.order_count() == 8  # the warm-up, the blocker and six


@pytest.mark.parametrize("value", ["0", "-1", "1001", "many", "2.5"])
def test_a_malformed_batch_cap_stops_the_start_naming_the_variable(value: str) -> None:
    from function.settings import ConfigError, Settings

    env = {"DATABASE_URL": "postgresql://u:secret@h:5432/d", "REDIS_URL": "redis://h:6379/0",
           "DATABASE_BATCH_MAX": value}
    with pytest.raises(ConfigError, match="DATABASE_BATCH_MAX") as raised:
        Settings.from_env(env)
    assert "secret" not in str(raised.value)
