"""/metrics speaks for the whole copy, however many gunicorn workers serve it: a scrape
answered by any worker counts every request of every worker exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from support import Client, Database, sample
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


@pytest.fixture
def copy_losing_a_worker(base_env: dict[str, str], workdir: Path, db: Database) -> Iterator[FunctionCopy]:
    """Two workers; its log is named so the 500/crash watch skips it: the SIGKILL of a
    worker below, which gunicorn logs as a crash, is the test's own doing."""
    copy = FunctionCopy({**base_env, "WORKERS": "2", "DATABASE_POOL_SIZE": "4"},
                        log=workdir / "worker-killed-on-purpose.log").start()
    yield copy
    copy.kill()


def test_a_worker_gunicorn_replaced_keeps_its_counts_but_not_its_gauges(
    copy_losing_a_worker: FunctionCopy, db: Database,
) -> None:
    copy = copy_losing_a_worker
    served: dict[str, int] = {}
    created = 0
    while len(served) < 2 and created < MAX_CREATES:
        answer = Client(copy.url).create(key=f"before-{created}")
        served[answer.headers["X-Served-By"]] = served.get(answer.headers["X-Served-By"], 0) + 1
        created += 1
    assert len(served) == 2, "one worker served every request"
    doomed = next(iter(served))
    os.kill(int(doomed.rsplit("/", 1)[1]), signal.SIGKILL)  # an OOM kill, say; gunicorn starts another

    # Until the replacement has served (and so built its pool, max 4, like the survivor).
    seen: set[str] = set()
    for _ in range(MAX_CREATES):
        answer = Client(copy.url).create(key=f"after-{created}")
        assert answer.status_code == 201
        created += 1
        seen.add(answer.headers["X-Served-By"])
        if len(seen - set(served)) == 1 and len(seen) == 2:
            break
    assert len(seen - set(served)) == 1, "no replacement worker answered"

    text = requests.get(copy.url + "/metrics", timeout=30).text
    assert sample(text, "orders_created_total") == created  # the dead worker's count stays
    assert sample(text, "orders_db_pool_connections_max") == 8  # two live workers, not three
    assert db.order_count() == created
