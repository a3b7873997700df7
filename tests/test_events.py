"""CloudEvents from Knative triggers go through the same engine as HTTP (the real app in
this process, tests/inprocess.py)."""

from __future__ import annotations

import json

import pytest
import requests

from devserver.servers import PostgresServer
from support import CREATE_EVENT as CREATE
from support import Client, Database, assert_problem, binary_event



def structured_event(client: Client, event: dict[str, object], path: str = "/orders") -> requests.Response:
    return client.http.post(
        client.url + path, data=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"}, timeout=30,
    )


def test_a_binary_event_creates_an_order_and_replies_with_a_created_event(app: Client, db: Database) -> None:
    reply = binary_event(app, {"productQuantity": 2, "productId": "sku-1", "profileId": "alice"})

    assert reply.status_code == 200
    order = reply.json()
    assert reply.headers["ce-type"] == "com.example.order.created"
    assert reply.headers["ce-source"] == "/orders"
    assert reply.headers["ce-id"] == order["orderId"]
    assert (order["profileId"], order["productQuantity"]) == ("alice", 2)
    assert db.order_count() == 1


def test_a_structured_event_creates_an_order(app: Client, db: Database) -> None:
    reply = structured_event(app, {
        "specversion": "1.0", "type": CREATE, "source": "/shop", "id": "s-1",
        "datacontenttype": "application/json", "profileid": "bob",
        "data": {"productQuantity": 4},
    })

    assert reply.status_code == 200, reply.text
    assert reply.json()["profileId"] == "bob"
    assert db.order_count("bob") == 1


def test_a_redelivered_event_makes_no_second_order_and_gets_the_same_reply(app: Client, db: Database) -> None:
    data = {"productQuantity": 1, "profileId": "alice"}
    first = binary_event(app, data, event_id="evt-1")
    again = binary_event(app, data, event_id="evt-1", path="/orders")

    assert again.status_code == 200
    assert again.content == first.content
    assert {h: again.headers[h] for h in ("ce-id", "ce-type", "ce-source", "ce-time")} == {
        h: first.headers[h] for h in ("ce-id", "ce-type", "ce-source", "ce-time")
    }
    assert db.order_count() == 1
    other_source = binary_event(app, data, event_id="evt-1", source="/elsewhere")
    assert other_source.json()["orderId"] != first.json()["orderId"]


def test_an_http_request_and_an_event_with_the_same_key_make_one_order(app: Client, db: Database) -> None:
    over_http = app.create({"productQuantity": 3}, key="shared-key", profile="carol")
    as_event = binary_event(
        app, {"productQuantity": 3}, profileid="carol", idempotencykey="shared-key"
    )

    assert as_event.status_code == 200
    assert as_event.json() == over_http.json()
    assert as_event.headers["Idempotent-Replayed"] == "true"
    assert db.order_count() == 1


@pytest.mark.parametrize(
    ("headers", "body", "named"),
    [
        pytest.param({"ce-specversion": "1.0", "ce-source": "/s", "ce-id": "1"}, "{}", "CloudEvent", id="no-type"),
        pytest.param({"ce-specversion": "1.0", "ce-type": CREATE, "ce-id": "1"}, "{}", "CloudEvent", id="no-source"),
        pytest.param({"ce-specversion": "1.0", "ce-type": "com.example.other", "ce-source": "/s", "ce-id": "1"},
                     '{"productQuantity": 1, "profileId": "a"}', CREATE, id="wrong-type"),
        pytest.param({"ce-specversion": "1.0", "ce-type": CREATE, "ce-source": "/s", "ce-id": "1"},
                     "not json", "JSON", id="data-not-json"),
        pytest.param({"ce-specversion": "1.0", "ce-type": CREATE, "ce-source": "/s", "ce-id": "1"},
                     '{"productQuantity": "many", "profileId": "a"}', "productQuantity", id="bad-data"),
        pytest.param({"ce-specversion": "1.0", "ce-type": CREATE, "ce-source": "/s", "ce-id": "1"},
                     '{"productQuantity": 1}', "profile", id="missing-profile"),
        pytest.param({"ce-specversion": "1.0", "ce-type": CREATE, "ce-source": "/s", "ce-id": "1",
                      "ce-profileid": "a"}, '{"productQuantity": 1, "profileId": "b"}', "different profiles",
                     id="profiles-disagree"),
        pytest.param({"ce-specversion": "1.0", "ce-type": CREATE, "ce-source": "/s", "ce-id": "1",
                      "ce-idempotencykey": "has space"}, '{"productQuantity": 1, "profileId": "a"}',
                     "idempotencykey attribute", id="bad-key"),
    ],
)
def test_a_malformed_event_is_a_400_with_a_reason_and_makes_nothing(
    app: Client, db: Database, headers: dict[str, str], body: str, named: str
) -> None:
    response = app.http.post(app.url + "/", data=body, headers={"Content-Type": "application/json", **headers}, timeout=10)
    assert_problem(response, 400, named)
    assert db.order_count() == 0


def test_a_structured_event_that_is_not_json_is_a_400(app: Client) -> None:
    response = app.http.post(app.url + "/", data="{oops", headers={"Content-Type": "application/cloudevents+json"}, timeout=10)
    problem = assert_problem(response, 400, "structured event", "not valid JSON")
    assert "required" not in problem["detail"]  # broken JSON, not "missing fields"


def test_a_plain_post_to_the_root_is_not_an_event_and_says_so(app: Client) -> None:
    response = app.http.post(app.url + "/", json={"productQuantity": 1}, timeout=10)
    assert_problem(response, 400, "CloudEvent")


def test_an_event_while_postgresql_is_down_is_a_503_so_knative_retries(app: Client, db: Database, postgres: PostgresServer) -> None:
    postgres.stop()
    response = binary_event(app, {"productQuantity": 1, "profileId": "alice"}, event_id="down")
    assert_problem(response, 503)
    postgres.start()
    assert binary_event(app, {"productQuantity": 1, "profileId": "alice"}, event_id="down").status_code == 200
    assert db.order_count() == 1


def test_an_event_reusing_its_identity_with_another_body_is_a_422_that_names_no_header(
    app: Client, db: Database
) -> None:
    binary_event(app, {"productQuantity": 1, "profileId": "alice"}, event_id="evt-reused")
    changed = binary_event(app, {"productQuantity": 2, "profileId": "alice"}, event_id="evt-reused")

    problem = assert_problem(changed, 422, "idempotency key", "different body")
    assert "header" not in problem["detail"].lower()  # events carry no Idempotency-Key header
    assert db.order_count() == 1
