"""function/openapi.json is valid OpenAPI 3.1, lists exactly the routes the function
serves, and says every status, header and body the function really answers (asked of
the real app in this process, tests/inprocess.py)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable

import jwt
import pytest
import requests
from openapi_spec_validator import validate

from devserver.servers import PostgresServer, RedisServer
from function.fingerprint import fingerprint
from function.records import InFlight, encode, redis_key
from function.validation import order_request_from
from support import ORDER, Client, Database
from hardening.documented import (
    AnswerLog,
    documented_operations,
    documented_statuses,
    load_document,
)

SECRET = "a-secret-of-the-openapi-tests-long-enough"
CREATE = "com.example.order.create"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return load_document()


def served_routes() -> set[tuple[str, str]]:
    """Every route of the table that the entry point hands to a handler."""
    from function import dispatch, route_table

    return {(route.method, route.path) for route in route_table.ROUTES if route.endpoint in dispatch.HANDLERS}


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1.")


def test_every_route_the_function_serves_is_documented_and_nothing_more(
    document: dict[str, Any],
) -> None:
    assert documented_operations(document) == served_routes()


def test_the_function_serves_the_document_as_it_is_in_the_repository(
    app: Client, document: dict[str, Any]
) -> None:
    response = app.get("/openapi.json", profile=None)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == document


def test_every_status_each_route_answers_is_documented_with_its_headers_and_body(
    app: Client, db: Database, serve_in_process: Callable[..., Client], redis_server: RedisServer,
    postgres: PostgresServer, document: dict[str, Any],
) -> None:
    answers = AnswerLog(document)
    tour_the_order_routes(app, answers)
    tour_the_event_route(app, answers)
    tour_the_operations_routes(app, answers)
    tour_postgresql_down(app, postgres, answers)
    # Last: while the JWT app serves, the default one does not (tests/inprocess.py).
    jwt_app = serve_in_process(AUTH_MODE="jwt", JWT_SECRET=SECRET, IDEMPOTENCY_WAIT_SECONDS="0")
    tour_what_only_jwt_mode_and_a_busy_key_answer(jwt_app, redis_server, answers)

    # ... and the document claims no status that none of these requests could bring about.
    assert dict(answers.seen) == documented_statuses(document)


def tour_the_order_routes(app: Client, answers: AnswerLog) -> None:
    create, listing, get = ("POST", "/orders"), ("GET", "/orders"), ("GET", "/orders/{orderId}")
    created = answers.check(*create, app.create(key="tour"))
    answers.check(*create, app.create(key="tour"))  # a replay
    answers.check(*create, app.create({"productQuantity": 1, "productId": None}, key="null-product"))
    answers.check(*create, app.create({"productQuantity": 0}))
    answers.check(*create, app.create(key=None))
    answers.check(*create, app.create(profile=None))
    answers.check(*create, app.create(data="x" * 70_000))
    answers.check(*create, app.create(data=json.dumps(ORDER), headers={"Content-Type": "text/plain"}))
    answers.check(*create, app.create({"productQuantity": 9}, key="tour"))
    answers.check(*create, post_binary_event(app, "/orders", {"productQuantity": 1, "profileId": "alice"}))

    answers.check(*get, app.get(created.headers["Location"]))
    answers.check(*get, app.get(f"/orders/{uuid.uuid4()}"))
    answers.check(*get, app.get("/orders/not-a-uuid"))

    first_page = answers.check(*listing, app.get("/orders", params={"limit": "1"}))
    answers.check(*listing, app.get("/orders", params={"cursor": first_page.json()["nextCursor"]}))
    answers.check(*listing, app.get("/orders", params={"limit": "501"}))


def tour_the_event_route(app: Client, answers: AnswerLog) -> None:
    event = ("POST", "/")
    data = {"productQuantity": 3, "profileId": "alice"}
    answers.check(*event, post_binary_event(app, "/", data, idempotencykey="event-tour"))
    answers.check(*event, post_binary_event(app, "/", {**data, "productQuantity": 4}, idempotencykey="event-tour"))
    answers.check(*event, post_binary_event(app, "/", {"productQuantity": 3}))
    answers.check(*event, post_binary_event(app, "/", "x" * 70_000))
    answers.check(*event, post_binary_event(app, "/", {}, type="dev.knative.sources.ping"))  # 202
    structured = {"specversion": "1.0", "type": CREATE, "source": "/tour", "id": "s-1", "data": data}
    answers.check(*event, app.http.post(
        app.url + "/", data=json.dumps(structured),
        headers={"Content-Type": "application/cloudevents+json"}, timeout=30,
    ))


def tour_the_operations_routes(app: Client, answers: AnswerLog) -> None:
    answers.check("GET", "/healthz", app.get("/healthz", profile=None))
    answers.check("GET", "/metrics", app.get("/metrics", profile=None))
    answers.check("GET", "/openapi.json", app.get("/openapi.json", profile=None))


def tour_what_only_jwt_mode_and_a_busy_key_answer(client: Client, redis_server: RedisServer, answers: AnswerLog) -> None:
    bearer = {"Authorization": "Bearer " + jwt.encode({"sub": "alice", "exp": int(time.time()) + 300}, SECRET)}
    for method, path in (("POST", "/orders"), ("GET", "/orders"), ("GET", "/orders/{orderId}")):
        url = path.replace("{orderId}", str(uuid.uuid4()))
        answers.check(method, path, client.http.request(
            method, client.url + url, json=ORDER, headers={"Idempotency-Key": "k"}, timeout=30))
        answers.check(method, path, client.http.request(
            method, client.url + url, json=ORDER, timeout=30,
            headers={**bearer, "Idempotency-Key": "k", "X-Profile-Id": "mallory"}))

    # A claim held by "another copy" that never finishes within the (zero) wait: 409.
    held = InFlight(fingerprint(order_request_from(ORDER).canonical()), owner="another-copy")
    redis_server.client().set(redis_key("alice", "busy"), encode(held), px=30_000)
    answers.check("POST", "/orders", client.create(key="busy", profile=None, headers=bearer))
    answers.check("POST", "/", post_binary_event(client, "/", {**ORDER, "profileId": "alice"}, idempotencykey="busy"))


def tour_postgresql_down(app: Client, postgres: PostgresServer, answers: AnswerLog) -> None:
    postgres.stop()
    try:
        answers.check("POST", "/orders", app.create())
        answers.check("GET", "/orders", app.get("/orders"))
        answers.check("GET", "/orders/{orderId}", app.get(f"/orders/{uuid.uuid4()}"))
        answers.check("POST", "/", post_binary_event(app, "/", {"productQuantity": 1, "profileId": "alice"}))
        answers.check("GET", "/healthz", app.get("/healthz", profile=None))
    finally:
        postgres.start()


def post_binary_event(client: Client, path: str, data: object, **extensions: str) -> requests.Response:
    headers = {
        "ce-specversion": "1.0", "ce-type": CREATE, "ce-source": "/openapi-tour",
        "ce-id": str(uuid.uuid4()), "Content-Type": "application/json",
        **{f"ce-{name}": value for name, value in extensions.items()},
    }
    body = data if isinstance(data, str) else json.dumps(data)
    return client.http.post(client.url + path, data=body, headers=headers, timeout=30)
