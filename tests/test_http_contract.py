"""The HTTP contract, route by route and status by status, against the real app in this
process (tests/inprocess.py); what only a served copy shows is in test_framing.py."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from support import ORDER, Client, Database, assert_problem

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def test_a_new_key_creates_an_order_and_says_where_it_lives(app: Client, db: Database) -> None:
    response = app.create({"productId": "sku-9", "productQuantity": 3}, key="first")

    assert response.status_code == 201
    order = response.json()
    assert uuid.UUID(order["orderId"])
    assert order["profileId"] == "alice"
    assert isinstance(order["orderNumber"], int)
    assert (order["productId"], order["productQuantity"]) == ("sku-9", 3)
    assert RFC3339_UTC.fullmatch(order["createdAt"])
    assert response.headers["Location"] == f"/orders/{order['orderId']}"
    assert "Idempotent-Replayed" not in response.headers
    assert db.order_count() == 1


def test_the_same_key_and_body_replays_the_identical_answer_without_a_new_order(
    app: Client, db: Database
) -> None:
    first = app.create(key="again")
    second = app.create(key="again")

    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert db.order_count() == 1


def test_the_quoted_key_form_and_a_lowercase_header_name_mean_the_same_key(
    app: Client, db: Database
) -> None:
    first = app.create(key="abc")
    quoted = app.create(key='"abc"')
    lowercase = app.create(key=None, headers={"idempotency-key": "abc"})

    assert quoted.json() == first.json() == lowercase.json()
    assert db.order_count() == 1


def test_reordered_and_respaced_json_is_the_same_body(app: Client, db: Database) -> None:
    first = app.create(data='{"productId":"sku-1","productQuantity":2}', key="k")
    respaced = app.create(data='{\n  "productQuantity" : 2 ,\n  "productId":  "sku-1"\n}', key="k")

    assert respaced.status_code == 201
    assert respaced.json() == first.json()
    assert db.order_count() == 1


def test_a_changed_body_under_a_used_key_is_422_and_makes_nothing(app: Client, db: Database) -> None:
    original = app.create({"productQuantity": 2}, key="k")
    mismatches_before = app.outcome_count("mismatch")
    changed = app.create({"productQuantity": 3}, key="k")

    assert_problem(changed, 422, "different body")
    assert db.order_count() == 1
    assert app.outcome_count("mismatch") == mismatches_before + 1
    assert app.create({"productQuantity": 2}, key="k").json() == original.json()


def test_a_missing_key_is_400_when_keys_are_required(app: Client, db: Database) -> None:
    assert_problem(app.create(key=None), 400, "Idempotency-Key")
    assert db.order_count() == 0


def test_the_profile_may_come_from_the_query_and_may_repeat_the_header(app: Client) -> None:
    by_query = app.http.post(
        app.url + "/orders?profileId=bob", json=ORDER,
        headers={"Idempotency-Key": "q1"}, timeout=10,
    )
    both = app.create(key="q1", profile="bob", params={"profileId": "bob"})

    assert by_query.status_code == 201 and by_query.json()["profileId"] == "bob"
    assert both.json() == by_query.json()


BAD_BODIES = [
    pytest.param('{"productQuantity": 2', "not valid json", id="malformed-json"),
    pytest.param("[1, 2]", "json object", id="array"),
    pytest.param('"text"', "json object", id="string"),
    pytest.param("", "not valid json", id="empty"),
    pytest.param('{"productQuantity": "2"}', "productQuantity", id="quantity-as-string"),
    pytest.param('{"productQuantity": 2.5}', "productQuantity", id="quantity-as-float"),
    pytest.param('{"productQuantity": true}', "productQuantity", id="quantity-as-bool"),
    pytest.param('{"productQuantity": 0}', "productQuantity", id="quantity-zero"),
    pytest.param('{"productQuantity": 10001}', "productQuantity", id="quantity-too-big"),
    pytest.param('{"productQuantity": 99999999999999999999999}', "productQuantity", id="quantity-huge"),
    pytest.param("{}", "productQuantity", id="quantity-missing"),
    pytest.param('{"productQuantity": 1, "productId": 7}', "productId", id="product-id-number"),
    pytest.param('{"productQuantity": 1, "productId": ""}', "productId", id="product-id-empty"),
    pytest.param('{"productQuantity": 1, "productId": "' + "x" * 65 + '"}', "productId", id="product-id-long"),
    pytest.param('{"productQuantity": 1, "price": 5}', "price", id="unknown-field"),
    pytest.param('{"productQuantity": 1, "productQuantity": 2}', "duplicate", id="duplicate-member"),
    pytest.param('{"productQuantity": NaN}', "not json", id="nan"),
    pytest.param("[" * 100_00 + "]" * 100_00, "nests too deeply", id="deep-nesting"),
]


@pytest.mark.parametrize(("body", "named"), BAD_BODIES)
def test_a_bad_body_is_a_400_naming_the_problem_and_writes_nothing(
    app: Client, db: Database, body: str, named: str
) -> None:
    assert_problem(app.create(data=body), 400, named)
    assert db.order_count() == 0


def test_a_body_that_is_not_utf8_is_a_400(app: Client, db: Database) -> None:
    assert_problem(app.create(data=b'{"productId": "\xff\xfe", "productQuantity": 1}'), 400, "UTF-8")


@pytest.mark.parametrize(
    ("key", "named"),
    [
        pytest.param("k" * 256, "255", id="256-characters"),
        pytest.param("has space", "visible ASCII", id="inner-space"),
        pytest.param("tab\there", "visible ASCII", id="control-character"),
        pytest.param('"unterminated', "RFC 8941", id="bad-quoted-form"),
        pytest.param('"bad\\escape"', "RFC 8941", id="bad-escape"),
        pytest.param('""', "1-255", id="empty-quoted"),
        pytest.param("ключ", "visible ASCII", id="non-ascii"),
    ],
)
def test_a_bad_idempotency_key_is_a_400_naming_the_header(
    app: Client, db: Database, key: str, named: str
) -> None:
    assert_problem(app.create(key=key.encode("utf-8").decode("latin-1")), 400, "Idempotency-Key", named)
    assert db.order_count() == 0


def test_a_key_of_exactly_255_characters_is_accepted(app: Client) -> None:
    assert app.create(key="k" * 255).status_code == 201


@pytest.mark.parametrize(
    ("profile", "query", "named"),
    [
        pytest.param(None, None, "profile is required", id="missing"),
        pytest.param("has space", None, "profile id", id="bad-character"),
        pytest.param("p" * 65, None, "profile id", id="too-long"),
        pytest.param("alice", "bob", "different profiles", id="header-and-query-disagree"),
    ],
)
def test_a_missing_or_bad_profile_is_a_400(
    app: Client, db: Database, profile: str | None, query: str | None, named: str
) -> None:
    params = {"profileId": query} if query else None
    assert_problem(app.create(profile=profile, params=params), 400, named)
    assert db.order_count() == 0


def test_a_body_over_64_kib_is_a_413(app: Client, db: Database) -> None:
    huge = json.dumps({"productQuantity": 1, "productId": "x" * 70_000})
    assert_problem(app.create(data=huge), 413, "bytes")


def test_a_chunked_body_over_64_kib_is_a_413(app: Client, db: Database) -> None:
    chunks = (b"x" * 8192 for _ in range(10))  # no Content-Length: the limit still holds
    assert_problem(app.create(data=chunks), 413, "bytes")
    assert db.order_count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_another_content_type_is_a_415(app: Client, db: Database, content_type: str | None) -> None:
    response = app.http.post(
        app.url + "/orders", data=json.dumps(ORDER).encode(),
        headers={"X-Profile-Id": "alice", "Idempotency-Key": "k",
                 **({"Content-Type": content_type} if content_type else {})},
        timeout=10,
    )
    problem = assert_problem(response, 415, "application/json")
    assert (content_type or "none") in problem["detail"]  # says what was received
    assert db.order_count() == 0


def test_get_returns_the_order_as_created(app: Client) -> None:
    created = app.create(key="g")
    fetched = app.get(created.headers["Location"])

    assert fetched.status_code == 200
    assert fetched.json() == created.json()


def test_get_of_an_unknown_id_is_404_and_a_malformed_id_is_400(app: Client) -> None:
    assert_problem(app.get(f"/orders/{uuid.uuid4()}"), 404, "no order")
    malformed = assert_problem(app.get("/orders/not-a-uuid"), 400, "UUID")
    assert "path" in malformed["title"] and "query" not in malformed["title"]  # a path segment
    assert_problem(app.get(f"/orders/{uuid.uuid4()}", profile=None), 400, "profile")


def test_list_pages_through_every_order_newest_first_exactly_once(app: Client) -> None:
    created = [app.create({"productQuantity": n}, key=f"list-{n}").json() for n in range(1, 8)]
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = app.get("/orders", params=params).json()
        seen.extend(page["orders"])
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert seen == list(reversed(created))


def test_list_defaults_to_50_orders(app: Client) -> None:
    for n in range(51):
        app.create({"productQuantity": 1}, key=f"many-{n}")
    page = app.get("/orders").json()
    assert len(page["orders"]) == 50 and page["nextCursor"] is not None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"), ({"cursor": "bogus!"}, "cursor"), ({"cursor": "djI6MTA"}, "cursor"),
    ],
)
def test_list_with_a_bad_limit_or_cursor_is_a_400(app: Client, params: dict[str, str], named: str) -> None:
    assert_problem(app.get("/orders", params=params), 400, named)


def test_the_same_key_from_two_profiles_makes_two_orders(app: Client, db: Database) -> None:
    alice = app.create(key="shared", profile="alice").json()
    bob = app.create(key="shared", profile="bob").json()

    assert alice["orderId"] != bob["orderId"]
    assert db.order_count() == 2


def test_another_profiles_order_is_404_and_absent_from_the_list(app: Client) -> None:
    alice_order = app.create(key="mine", profile="alice")

    assert_problem(app.get(alice_order.headers["Location"], profile="mallory"), 404)
    assert app.get("/orders", profile="mallory").json() == {"orders": [], "nextCursor": None}


def test_healthz_reports_both_stores(app: Client) -> None:
    response = app.get("/healthz", profile=None)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}


def test_metrics_count_outcomes_in_prometheus_text(app: Client) -> None:
    before_created, before_replayed = app.outcome_count("created"), app.outcome_count("replayed-redis")
    app.create(key="m")
    app.create(key="m")

    assert app.outcome_count("created") == before_created + 1
    assert app.outcome_count("replayed-redis") == before_replayed + 1
    text = app.get("/metrics", profile=None).text
    assert "orders_request_duration_seconds_bucket" in text
    assert 'orders_http_requests_total{method="POST",route="create",status="201"}' in text
    assert re.search(r"^orders_created_total [1-9]", text, re.MULTILINE)


def test_an_unknown_route_is_a_404_and_a_wrong_method_a_405(app: Client) -> None:
    assert_problem(app.get("/nowhere"), 404, "route")
    response = app.http.delete(app.url + "/orders", timeout=10)
    assert_problem(response, 405, "GET")
    assert "POST" in response.headers["Allow"]


def test_every_answer_names_the_copy_that_served_it(app: Client) -> None:
    assert re.fullmatch(r".+/\d+", app.create().headers["X-Served-By"])
    assert app.get("/nowhere").headers["X-Served-By"]
