"""The function's real ASGI app in the test process, driven by Starlette's TestClient.

The app is the one functions-framework serves: `startup.start` runs on the settings (schema
applied, the framework patched, `handle` built) and functions-framework's own
`create_asgi_app_from_module` wraps `handle`, as it does after loading function/main.py.
The app's lifespan runs (TestClient as a context manager), and it talks to the same real
PostgreSQL and Redis as every other test. What needs a process of its own (start-up exit
codes, SIGTERM, gunicorn and uvicorn framing, copies racing, crashes) stays on copies
(devserver/copies.py). A failure here comes with the function's own traceback, at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import types
from typing import Any, Iterator, Mapping

import functions_framework.aio
from starlette.testclient import TestClient

from function import startup, worker
from support import Client

BASE_URL = "http://testserver"
# Variables that would make start-up act for a process, not for this one: more than one
# worker means prometheus-client's multiprocess mode, read once per process.
_PROCESS_ONLY = ("WORKERS", "PROMETHEUS_MULTIPROC_DIR")


class ErrorWatch(logging.Handler):
    """What copies' logs are read for (hardening/server_errors.py), seen in this process:
    every record at error or above, from the function, uvicorn or anything under them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(f"{record.name}: {record.getMessage()}"[:300])


class InProcessSession:
    """requests' calling convention (what the tests use) over a TestClient: `data=` of
    text, bytes or an iterator of chunks is the raw body, and a header value is sent in
    Latin-1, as requests sends them. There is no socket, so no `timeout`."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.failures: list[str] = []  # every 500 answered: guarantee 4 says there are none
        self.service: worker.Service | None = None  # built by its first request
        self.errors = ErrorWatch()  # on the root logger while this app serves (re-added: each start configures logging)

    def watch_errors(self) -> None:
        root = logging.getLogger()
        if self.errors not in root.handlers:
            root.addHandler(self.errors)

    def failed(self) -> list[str]:
        """The 500s answered and the errors logged since the last call."""
        found = self.failures + self.errors.seen
        self.failures, self.errors.seen = [], []
        return found

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        if data is not None and not isinstance(data, dict):
            kwargs["content"] = kwargs.pop("data")
        kwargs.pop("timeout", None)
        if kwargs.get("headers"):
            kwargs["headers"] = {name: _latin1(value) for name, value in kwargs["headers"].items()}
        if self.service is not None and _current_service() is not self.service:
            raise RuntimeError("another in-process app serves now (worker.py keeps one per process): "
                               "use this one before the other starts or after it stops")
        self.watch_errors()
        response = self.client.request(method, url, **kwargs)
        self.service = _current_service()
        if response.status_code == 500:
            self.failures.append(f"{method} {url}: {response.text[:300]}")
        return response

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)


def _current_service() -> worker.Service | None:
    return worker._built[0] if worker._built else None


def _latin1(value: str | bytes) -> str | bytes:
    return value.encode("latin-1") if isinstance(value, str) and not value.isascii() else value


@contextlib.contextmanager
def serving_in_process(env: Mapping[str, str]) -> Iterator[Client]:
    """A Client for the app started with `env` as its whole environment, lifespan run
    (`no_500` checks what it answered).

    worker.py keeps one Service per process (it is built once per worker); while this
    app serves, that place holds this app's Service, and the previous one is put back after.
    """
    env = {name: value for name, value in env.items() if name not in _PROCESS_ONLY}
    session: InProcessSession | None = None
    saved = list(worker._built)
    worker._built.clear()
    try:
        _settings, handle = startup.start(env)
        app = functions_framework.aio.create_asgi_app_from_module(
            "handle", "function/main.py", "http", types.SimpleNamespace(handle=handle), None,
        )
        with TestClient(app, base_url=BASE_URL) as test_client:
            session = InProcessSession(test_client)
            session.watch_errors()
            yield Client(BASE_URL, http=session)
    finally:
        if session is not None:
            logging.getLogger().removeHandler(session.errors)
        worker._built.clear()
        worker._built.extend(saved)


def no_500(client: Client) -> None:
    """Fails the test whose requests the in-process app answered with a 500, or during
    which it logged an error (copies' logs are read for the same, by conftest's
    no_copy_answered_a_500)."""
    session = client.http
    if isinstance(session, InProcessSession):
        failed = session.failed()
        assert not failed, f"the app answered 500 or logged an error: {failed}"
