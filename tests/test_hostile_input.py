"""Hostile keys, profiles, ids and bodies: never a 500, every refusal a problem+json that
says why, and nothing any of them sends changes the orders of another profile. Requests
go to the real app in this process (`app`, tests/inprocess.py); bytes that only a server's
HTTP parser sees (control characters, repeated headers) go over a socket to a copy (`api`)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import requests

from devserver.servers import RedisServer
from support import ORDER, Client, Database
from hardening.raw_http import send_raw

VICTIM = "victim"
VICTIM_ORDERS = {"v-1": {"productQuantity": 1, "productId": "sku-v1"}, "v-2": {"productQuantity": 7}}
VICTIM_ROWS = """SELECT order_id::text, order_number, profile_id, idempotency_key, fingerprint,
product_id, product_quantity, created_at FROM orders WHERE profile_id = :profile ORDER BY order_number"""
HASHED_REDIS_KEY = re.compile(rb"idem:v2:.{20}|idem:v1-reads-until", re.DOTALL)  # 20 raw digest bytes
SQL = "'; DROP TABLE orders;--"
VICTIM_ORDER = "{victim-order}"  # replaced by the id of one of the victim's orders


@dataclass(frozen=True)
class Hostile:
    method: str = "POST"
    path: str = "/orders"
    headers: dict[str, str | bytes] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = json.dumps(ORDER).encode()
    content_type: str = "application/json"


def as_mallory(key: str | bytes = "mallory-key", **headers: str | bytes) -> dict[str, str | bytes]:
    return {"X-Profile-Id": "mallory", "Idempotency-Key": key, **headers}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def cursor_for(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


HOSTILE = [
    # Keys: SQL, Redis glob patterns, the victim's own keys, lengths, encodings.
    pytest.param(Hostile(headers=as_mallory(SQL)), id="key-sql-bare"),
    pytest.param(Hostile(headers=as_mallory(json.dumps(SQL))), id="key-sql-quoted"),
    pytest.param(Hostile(headers=as_mallory("*")), id="key-star"),
    pytest.param(Hostile(headers=as_mallory('"*"')), id="key-star-quoted"),
    pytest.param(Hostile(headers=as_mallory("idem:v1:*")), id="key-redis-prefix-glob"),
    pytest.param(Hostile(headers=as_mallory('"]] redis.call(\'FLUSHALL\') --"')), id="key-lua"),
    pytest.param(Hostile(headers=as_mallory("v-1")), id="key-of-the-victim-from-another-profile"),
    pytest.param(Hostile(headers=as_mallory('"v-1"')), id="key-of-the-victim-quoted"),
    pytest.param(Hostile(headers=as_mallory("k" * 255)), id="key-255"),
    pytest.param(Hostile(headers=as_mallory("k" * 256)), id="key-256"),
    pytest.param(Hostile(headers=as_mallory("k" * 8000)), id="key-8000"),
    pytest.param(Hostile(headers=as_mallory('"' + "\\" * 600 + '"')), id="key-many-escapes"),
    pytest.param(Hostile(headers=as_mallory("ключ".encode())), id="key-utf8-bytes"),
    pytest.param(Hostile(headers=as_mallory(b"\xe9t\xe9")), id="key-latin1-bytes"),
    pytest.param(Hostile(headers=as_mallory(b"\xff\xfe\xfd")), id="key-invalid-utf8"),
    pytest.param(Hostile(headers=as_mallory('"\\u0000"')), id="key-escaped-nul-text"),
    # Profiles: SQL, wildcards, look-alikes of the victim, lengths, encodings.
    pytest.param(Hostile(headers={"X-Profile-Id": "victim'--", "Idempotency-Key": "p1"}), id="profile-sql-comment"),
    pytest.param(Hostile(headers={"X-Profile-Id": SQL, "Idempotency-Key": "p2"}), id="profile-sql-drop"),
    pytest.param(Hostile(headers={"X-Profile-Id": "' OR '1'='1", "Idempotency-Key": "p3"}), id="profile-sql-or"),
    pytest.param(Hostile(headers={"X-Profile-Id": "*", "Idempotency-Key": "p4"}), id="profile-star"),
    pytest.param(Hostile(headers={"X-Profile-Id": "%", "Idempotency-Key": "p5"}), id="profile-like-wildcard"),
    pytest.param(Hostile(headers={"X-Profile-Id": "VICTIM", "Idempotency-Key": "v-1"}), id="profile-victim-upper-case"),
    pytest.param(Hostile(headers={"X-Profile-Id": "victim.", "Idempotency-Key": "v-1"}), id="profile-victim-dot"),
    pytest.param(Hostile(headers={"X-Profile-Id": "vіctim".encode(), "Idempotency-Key": "v-1"}), id="profile-cyrillic-look-alike"),
    pytest.param(Hostile(headers={"X-Profile-Id": "v" * 65, "Idempotency-Key": "p6"}), id="profile-65"),
    pytest.param(Hostile(headers={"X-Profile-Id": "x" * 5000, "Idempotency-Key": "p7"}), id="profile-5000"),
    pytest.param(Hostile(headers={"X-Profile-Id": "mallory", "Idempotency-Key": "p8"}, params={"profileId": VICTIM}),
                 id="profile-header-and-query-disagree"),
    pytest.param(Hostile(headers={"Idempotency-Key": "p9"}, params={"profileId": "victim' OR 1=1--"}), id="profile-query-sql"),
    pytest.param(Hostile(headers={"X-Profile-Id": "victim\\", "Idempotency-Key": "p10"}), id="profile-backslash"),
    # Bodies: SQL stored as text, strings PostgreSQL or UTF-8 cannot hold, a body naming the victim.
    pytest.param(Hostile(headers=as_mallory("b1"), body=body({"productQuantity": 1, "productId": SQL})), id="product-sql"),
    pytest.param(Hostile(headers=as_mallory("b2"), body=b'{"productQuantity": 1, "productId": "a\\u0000b"}'), id="product-nul"),
    pytest.param(Hostile(headers=as_mallory("b3"), body=b'{"productQuantity": 1, "productId": "\\ud800"}'), id="product-lone-surrogate"),
    pytest.param(Hostile(headers=as_mallory("b4"), body=body({"productQuantity": 1, "productId": "🙂" * 64})), id="product-64-emoji"),
    pytest.param(Hostile(headers=as_mallory("b5"), body=body({"productQuantity": 1, "profileId": VICTIM})), id="body-names-the-victim"),
    pytest.param(Hostile(headers=as_mallory("b6"), body=b'{"productQuantity": "1; DROP TABLE orders"}'), id="quantity-sql"),
    pytest.param(Hostile(headers=as_mallory("b7"), body=b'{"productQuantity": 1e2}'), id="quantity-exponent"),
    pytest.param(Hostile(headers=as_mallory("b8"), body=b'{"productQuantity": -9223372036854775809}'), id="quantity-below-bigint"),
    pytest.param(Hostile(headers=as_mallory("b9"), body=b'{"__proto__": {"admin": true}, "productQuantity": 1}'), id="proto-member"),
    pytest.param(Hostile(headers=as_mallory("b10"), body=b'{"' + b"k" * 60_000 + b'": 1}'), id="huge-member-name"),
    pytest.param(Hostile(headers=as_mallory("b11"), body=b"[" * 30_000 + b"]" * 30_000), id="deep-nesting"),
    pytest.param(Hostile(headers=as_mallory("b12"), body=b"\xff\xfe\x00{"), id="body-not-utf8"),
    # The victim's own keys with another body: refused, never rewritten.
    pytest.param(Hostile(headers={"X-Profile-Id": VICTIM, "Idempotency-Key": "v-1"}, body=body({"productQuantity": 9999})),
                 id="victim-key-other-body"),
    # Reading: ids, cursors and limits that try to reach further than the profile.
    pytest.param(Hostile("GET", "/orders/" + VICTIM_ORDER, headers={"X-Profile-Id": "mallory"}, body=None), id="get-victim-order-as-mallory"),
    pytest.param(Hostile("GET", "/orders/" + VICTIM_ORDER, headers={"X-Profile-Id": "VICTIM"}, body=None), id="get-victim-order-as-upper-case"),
    pytest.param(Hostile("GET", "/orders/' OR '1'='1", headers={"X-Profile-Id": "mallory"}, body=None), id="get-sql-id"),
    pytest.param(Hostile("GET", "/orders/%0A", headers={"X-Profile-Id": "mallory"}, body=None), id="get-newline-id"),
    pytest.param(Hostile("GET", "/orders/..%2F..%2Fhealthz", headers={"X-Profile-Id": "mallory"}, body=None), id="get-dot-dot"),
    pytest.param(Hostile("GET", "/orders", headers={"X-Profile-Id": "mallory"}, params={"cursor": SQL}, body=None), id="list-sql-cursor"),
    pytest.param(Hostile("GET", "/orders", headers={"X-Profile-Id": "mallory"}, params={"cursor": cursor_for("v1:" + "9" * 40)},
                         body=None), id="list-cursor-beyond-bigint"),
    pytest.param(Hostile("GET", "/orders", headers={"X-Profile-Id": "mallory"}, params={"cursor": cursor_for("v1:" + "9" * 5000)},
                         body=None), id="list-cursor-5000-digits"),
    pytest.param(Hostile("GET", "/orders", headers={"X-Profile-Id": "mallory"}, params={"limit": "500; DROP TABLE orders"},
                         body=None), id="list-sql-limit"),
    pytest.param(Hostile("GET", "/orders", headers={"X-Profile-Id": "mallory"}, params={"limit": "٣"}, body=None),
                 id="list-non-ascii-digit-limit"),
    pytest.param(Hostile("GET", "/orders", params={"profileId": "*"}, body=None), id="list-star-profile"),
    # Events: the victim's event key with another body is refused too.
    pytest.param(Hostile("POST", "/", headers={"ce-specversion": "1.0", "ce-type": "com.example.order.create",
                                                "ce-source": "/x", "ce-id": "1", "ce-profileid": VICTIM,
                                                "ce-idempotencykey": "v-2"},
                         body=body({"productQuantity": 1})), id="event-victim-key-other-body"),
    pytest.param(Hostile("POST", "/", headers={"ce-specversion": "1.0", "ce-type": "com.example.order.create",
                                                "ce-source": SQL, "ce-id": SQL, "ce-profileid": "mallory"},
                         body=body({"productQuantity": 1})), id="event-sql-identity"),
    pytest.param(Hostile("POST", "/", body=b"[" * 30_000 + b"]" * 30_000, content_type="application/cloudevents+json"),
                 id="event-structured-deep-nesting"),
    pytest.param(Hostile("POST", "/", body=b"\x80{}", content_type="application/cloudevents+json"),
                 id="event-structured-not-utf8"),
    pytest.param(Hostile("POST", "/", body=b'{"specversion": "1.0", "type": "com.example.order.create", '
                         b'"source": "\\ud800", "id": "3", "profileid": "mallory", "data": {"productQuantity": 1}}',
                         content_type="application/cloudevents+json"), id="event-structured-lone-surrogate-source"),
    pytest.param(Hostile("POST", "/", body=b'{"specversion": "1.0", "type": "com.example.order.create", "source": "/x", '
                         b'"id": "2", "profileid": "mallory", "data": {"productQuantity": 1, "productId": "\\ud800"}}',
                         content_type="application/cloudevents+json"), id="event-structured-lone-surrogate"),
]


@pytest.fixture
def victim(app: Client, db: Database) -> list[list[Any]]:
    """The victim's orders, made before any hostile request; their rows as PostgreSQL has them."""
    for key, order in VICTIM_ORDERS.items():
        assert app.create(order, key=key, profile=VICTIM).status_code == 201
    return db.execute(VICTIM_ROWS, profile=VICTIM)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_request_is_refused_or_served_without_a_500_and_leaves_other_profiles_alone(
    app: Client, db: Database, redis_server: RedisServer, victim: list[list[Any]], hostile: Hostile
) -> None:
    response = send(app, hostile, victim_order=victim[0][0])

    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.json()["status"] == response.status_code and response.json()["detail"]
    assert db.execute(VICTIM_ROWS, profile=VICTIM) == victim
    assert_every_redis_key_is_a_hash(redis_server)


def test_sql_in_a_product_id_is_stored_as_text(app: Client, db: Database) -> None:
    created = app.create({"productQuantity": 1, "productId": SQL}, profile="mallory")

    assert created.status_code == 201 and created.json()["productId"] == SQL
    assert db.execute("SELECT product_id FROM orders WHERE profile_id = 'mallory'") == [[SQL]]
    assert app.get(created.headers["Location"], profile="mallory").json()["productId"] == SQL


def test_the_victims_key_from_another_profile_makes_that_profile_its_own_order(
    app: Client, db: Database, victim: list[list[Any]]
) -> None:
    mallory = app.create(VICTIM_ORDERS["v-1"], key="v-1", profile="mallory")

    assert mallory.status_code == 201 and "Idempotent-Replayed" not in mallory.headers
    assert mallory.json()["orderId"] not in {row[0] for row in victim}
    assert app.get("/orders", profile="mallory").json()["orders"] == [mallory.json()]


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param({"source": 5, "id": "1"}, id="source-a-number"),
        pytest.param({"source": "/x", "id": {"n": 1}}, id="id-an-object"),
        pytest.param({"source": "/x", "id": ""}, id="id-empty"),
    ],
)
def test_a_structured_event_whose_source_or_id_is_not_a_non_empty_string_is_a_400(
    app: Client, db: Database, identity: dict[str, Any]
) -> None:
    event = {"specversion": "1.0", "type": "com.example.order.create", "profileid": "mallory",
             "data": {"productQuantity": 1}, **identity}
    response = app.http.post(app.url + "/", data=json.dumps(event), timeout=30,
                             headers={"Content-Type": "application/cloudevents+json"})

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert db.order_count() == 0


@pytest.mark.parametrize(
    "header_lines",
    [
        pytest.param([b"X-Profile-Id: mallory\rX-Profile-Id: victim", b"Idempotency-Key: r1"], id="cr-in-profile"),
        pytest.param([b"X-Profile-Id: mallory\nX-Profile-Id: victim", b"Idempotency-Key: r2"], id="lf-in-profile"),
        pytest.param([b"X-Profile-Id: mallory", b"Idempotency-Key: r3\r"], id="cr-in-key"),
        pytest.param([b"X-Profile-Id: mallory", b"Idempotency-Key: r\x004"], id="nul-in-key"),
        pytest.param([b"X-Profile-Id: mallory", b"Idempotency-Key: r5", b" folded: victim"], id="obsolete-line-folding"),
    ],
)
def test_control_characters_in_headers_are_refused_before_the_function_sees_them(
    api: Client, db: Database, redis_server: RedisServer, victim: list[list[Any]], header_lines: list[bytes]
) -> None:
    answer = send_raw(api.url, b"POST", b"/orders", [b"Content-Type: application/json", *header_lines],
                      json.dumps(ORDER).encode())

    # gunicorn's own 400 or 431 (an HTML page naming the header, not its value): the
    # function never ran.
    assert answer.status in (400, 431) and "x-served-by" not in answer.headers
    assert db.execute(VICTIM_ROWS, profile=VICTIM) == victim
    assert db.order_count() == len(VICTIM_ORDERS)
    assert_every_redis_key_is_a_hash(redis_server)


def test_a_20_kb_key_header_is_refused_by_name_and_rule(api: Client, db: Database) -> None:
    answer = send_raw(api.url, b"POST", b"/orders", [
        b"Content-Type: application/json", b"X-Profile-Id: mallory", b"Idempotency-Key: " + b"k" * 20_000,
    ], json.dumps(ORDER).encode())

    assert answer.status == 400 and answer.headers["content-type"].startswith("application/problem+json")
    assert b"Idempotency-Key" in answer.body and b"k" * 300 not in answer.body  # named, not echoed
    assert db.order_count() == 0


@pytest.mark.parametrize("header", [b"Idempotency-Key", b"Authorization"])
def test_a_key_or_credential_header_sent_twice_is_refused(api: Client, db: Database, header: bytes) -> None:
    answer = send_raw(api.url, b"POST", b"/orders", [
        b"Content-Type: application/json", b"X-Profile-Id: alice", header + b": one", header + b": two",
        *([] if header == b"Idempotency-Key" else [b"Idempotency-Key: once"]),
    ], json.dumps(ORDER).encode())

    assert answer.status in (400, 401) and answer.headers["content-type"].startswith("application/problem+json")
    assert b"more than once" in answer.body and db.order_count() == 0


def test_a_profile_header_sent_twice_is_refused_rather_than_either_one_believed(
    api: Client, db: Database, victim: list[list[Any]]
) -> None:
    answer = send_raw(api.url, b"POST", b"/orders", [
        b"Content-Type: application/json", b"X-Profile-Id: mallory", b"X-Profile-Id: victim", b"Idempotency-Key: twice",
    ], json.dumps(ORDER).encode())

    assert answer.status == 400 and answer.headers["content-type"].startswith("application/problem+json")
    assert db.order_count() == len(VICTIM_ORDERS)


def send(app: Client, hostile: Hostile, *, victim_order: str) -> requests.Response:
    headers: dict[str, str | bytes] = dict(hostile.headers)
    if hostile.body is not None:
        headers["Content-Type"] = hostile.content_type
    return app.http.request(
        hostile.method, app.url + hostile.path.replace(VICTIM_ORDER, victim_order),
        headers=headers, params=hostile.params, data=hostile.body, timeout=30,
    )


def assert_every_redis_key_is_a_hash(redis_server: RedisServer) -> None:
    keys = cast(list[bytes], redis_server.client().keys("*"))
    assert all(HASHED_REDIS_KEY.fullmatch(key) for key in keys), keys
