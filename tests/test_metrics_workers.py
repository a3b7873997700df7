"""/metrics speaks for the whole copy, however many gunicorn workers serve it: a scrape
answered by any worker counts every request of every worker exactly once."""

from __future__ import annotations

from typing import Callable

import pytest
import requests

from conftest import Client, Database, sample
from devserver.copies import FunctionCopy

pytestmark = pytest.mark.multiprocess

# Enough fresh connections that the kernel hands some to each worker; the test checks it did.
MAX_CREATES = 200


def test_with_two_workers_every_scrape_counts_every_request_once(
    start_copies: Callable[..., list[FunctionCopy]], db: Database,
) -> None:
    (copy,) = start_copies(1, WORKERS="2")
    workers: set[str] = set()
    created = 0
    # A new client, so a new connection, per request: keep-alive would pin one worker.
    while created < MAX_CREATES and (len(workers) < 2 or created < 20):
        answer = Client(copy.url).create(key=f"worker-count-{created}")
        assert answer.status_code == 201
        workers.add(answer.headers["X-Served-By"])
        created += 1
    assert len(workers) == 2, "one worker served every request: nothing to add up"

    # Scrapes until each worker answered at least one (bounded like the creates).
    scrapes: dict[str, requests.Response] = {}
    for _ in range(MAX_CREATES):
        scrape = requests.get(copy.url + "/metrics", timeout=30)
        scrapes.setdefault(scrape.headers["X-Served-By"], scrape)
        if len(scrapes) == 2:
            break

    assert len(scrapes) == 2, "one worker answered every scrape"
    for scrape in scrapes.values():
        text = scrape.text
        assert sample(text, "orders_http_requests_total", '{method="POST",route="create",status="201"}') == created
        assert sample(text, "orders_created_total") == created
        assert sample(text, "orders_idempotency_outcomes_total", '{outcome="created"}') == created
    assert db.order_count() == created
