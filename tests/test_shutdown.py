"""Knative stops a copy with SIGTERM: what it is doing must still finish."""

from __future__ import annotations

import threading
from typing import Callable

import pytest
import requests

from devserver.copies import FunctionCopy
from devserver.servers import PostgresServer, RedisServer
from devserver.waiting import wait_until
from support import Client, Database, accepts_connections, claim_held

pytestmark = pytest.mark.multiprocess


def test_sigterm_lets_an_in_flight_create_finish_and_publish_its_answer(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: PostgresServer, redis_server: RedisServer
) -> None:
    stopping, other = start_copies(2)
    Client(stopping.url).create(key="warm-up")
    answers: list[requests.Response] = []

    postgres.pause()  # the create below claims its key, then waits on PostgreSQL
    in_flight = threading.Thread(target=lambda: answers.append(Client(stopping.url).create(key="late")))
    in_flight.start()
    wait_until(lambda: claim_held(redis_server, "alice", "late"), what="the create's claim", timeout_seconds=30)
    stopping.signal(15)  # SIGTERM, as the kubelet sends
    wait_until(lambda: not accepts_connections(stopping.url), what="the copy to stop accepting", timeout_seconds=30)
    postgres.resume()
    in_flight.join(timeout=30)
    assert stopping.process is not None
    exit_code = stopping.process.wait(timeout=30)

    assert [a.status_code for a in answers] == [201]
    assert exit_code == 0
    replay = Client(other.url).create(key="late")
    assert replay.content == answers[0].content
    # ... served from Redis: the stopping copy published its answer before exiting.
    metrics = Client(other.url).get("/metrics", profile=None).text
    assert 'orders_idempotency_outcomes_total{outcome="replayed-redis"} 1.0' in metrics
    assert db.order_count() == 2
