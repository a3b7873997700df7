"""Requests whose path or body framing is malformed, sent byte for byte over a socket.

Every one gets a 4xx: a problem+json where the function sees the request, the server's
own 400 where the framing cannot be parsed (or no answer, when the client's bytes end
before a body that was announced). None is a 500, none writes an order, and the copy
serves the next request as before.
"""

from __future__ import annotations

import json

import pytest

from support import ORDER, Client, Database
from hardening.raw_http import exchange

BODY = json.dumps(ORDER).encode()


def order_request(target: bytes, *framing: bytes, body: bytes = BODY, key: bytes = b"framing-key") -> bytes:
    head = [
        b"POST " + target + b" HTTP/1.1", b"Host: orders", b"Connection: close",
        b"Content-Type: application/json", b"X-Profile-Id: alice", b"Idempotency-Key: " + key, *framing,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def get_request(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: orders\r\nConnection: close\r\nX-Profile-Id: alice\r\n\r\n"


PATHS = [
    pytest.param(b"//orders", id="doubled-leading-slash"),
    pytest.param(b"/orders//", id="doubled-trailing-slash"),
    pytest.param(b"//orders//", id="doubled-both"),
    pytest.param(b"/./orders", id="dot-segment"),
    pytest.param(b"/orders/../orders", id="dot-dot-segment"),
    pytest.param(b"/orders/%2e%2e/healthz", id="encoded-dot-dot"),
    pytest.param(b"/orders%2F", id="encoded-slash"),
    pytest.param(b"/orders/%00", id="encoded-nul"),
    pytest.param(b"/orders/%ff%fe", id="encoded-invalid-utf8"),
    pytest.param(b"/orders/%", id="lone-percent"),
    pytest.param(b"/%E2%80%AEorders", id="encoded-bidi-control"),
    pytest.param(b"http://orders//orders", id="absolute-form-doubled"),
    pytest.param(b"*", id="asterisk-form"),
    pytest.param(b"/" + b"a/" * 2000, id="4000-segments"),
    pytest.param(b"/orders/\xff", id="raw-invalid-utf8-byte"),
    pytest.param(b"/\xc3\xa9", id="raw-utf8-bytes"),
    pytest.param(b"/orders?profileId=\xff", id="raw-byte-in-query"),
    pytest.param(b"/orders\x7f", id="raw-delete-byte"),
    pytest.param(b"/orders?profileId=%ff&profileId=%fe", id="query-parameter-twice"),
    pytest.param(b"/orders/%0A", id="encoded-newline"),
    pytest.param(b"/orders/a%0Db%0Ac", id="encoded-crlf"),
    pytest.param(b"/robots.txt", id="robots-txt"),
    pytest.param(b"/favicon.ico", id="favicon"),
]


@pytest.mark.parametrize("target", PATHS)
def test_a_malformed_path_on_a_post_is_a_4xx_problem_and_makes_no_order(
    api: Client, db: Database, target: bytes
) -> None:
    answer = exchange(api.url, order_request(target))

    assert answer is not None and 400 <= answer.status < 500, answer
    if "x-served-by" in answer.headers:  # the function saw it: its own problem+json
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert json.loads(answer.body)["detail"]
    assert db.order_count() == 0
    assert api.create().status_code == 201


@pytest.mark.parametrize("target", PATHS)
def test_a_malformed_path_on_a_get_is_answered_without_a_500(api: Client, target: bytes) -> None:
    answer = exchange(api.url, get_request(target))

    assert answer is not None and answer.status < 500, answer
    if answer.status >= 400 and "x-served-by" in answer.headers:
        assert answer.headers["content-type"].startswith("application/problem+json")
    if answer.status >= 400 and answer.body != b"Invalid HTTP request received.":
        # Past the server's parser, every refusal is the function's own problem+json,
        # also where functions-framework's router answers by itself (robots.txt, %0A).
        assert answer.headers["content-type"].startswith("application/problem+json"), answer


FRAMINGS = [
    pytest.param([b"Transfer-Encoding: chunked"], b"zz\r\n" + BODY + b"\r\n0\r\n\r\n", id="chunk-size-not-hex"),
    pytest.param([b"Transfer-Encoding: chunked"], b"-5\r\n" + BODY + b"\r\n0\r\n\r\n", id="chunk-size-negative"),
    pytest.param([b"Transfer-Encoding: chunked"], b"ffffffffffffffffffff\r\n" + BODY, id="chunk-size-overflows"),
    pytest.param([b"Transfer-Encoding: chunked"], b"%x\r\n%s0\r\n\r\n" % (len(BODY), BODY), id="chunk-missing-crlf"),
    pytest.param([b"Transfer-Encoding: chunked"], b"%x;\x00=\x01\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
                 id="chunk-extension-control-bytes"),
    pytest.param([b"Transfer-Encoding: chunked"], b"%x\r\n%s\r\n" % (len(BODY), BODY), id="chunked-without-last-chunk"),
    pytest.param([b"Transfer-Encoding: chunked"], b"%x\r\n%s" % (len(BODY) + 10, BODY), id="chunk-shorter-than-its-size"),
    pytest.param([b"Transfer-Encoding: chunked"], b"", id="chunked-with-no-chunks"),
    pytest.param([b"Transfer-Encoding: gzip, chunked"], b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
                 id="unsupported-coding-before-chunked"),
    pytest.param([b"Transfer-Encoding: chunked, identity"], BODY, id="chunked-not-last"),
    pytest.param([b"Transfer-Encoding: chunked", b"Content-Length: %d" % len(BODY)],
                 b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY), id="chunked-and-content-length"),
    pytest.param([b"Content-Length: %d" % len(BODY), b"Content-Length: 3"], BODY, id="two-different-content-lengths"),
    pytest.param([b"Content-Length: -1"], BODY, id="negative-content-length"),
    pytest.param([b"Content-Length: 1e3"], BODY, id="content-length-not-a-number"),
    pytest.param([b"Content-Length: %d" % (len(BODY) + 100)], BODY, id="body-shorter-than-content-length"),
    pytest.param([b"Content-Length: 99999999999999999999"], BODY, id="content-length-overflows"),
    pytest.param([b"Transfer-Encoding: chunked"], b"10000\r\n" + b"x" * 70_000 + b"\r\n0\r\n\r\n",
                 id="chunked-body-over-the-limit"),
]


@pytest.mark.parametrize(("framing", "body"), FRAMINGS)
def test_a_malformed_body_framing_is_a_4xx_or_no_answer_and_makes_no_order(
    api: Client, db: Database, framing: list[bytes], body: bytes
) -> None:
    answer = exchange(api.url, order_request(b"/orders", *framing, body=body))

    # None: the announced body never came and the client hung up; nothing to answer.
    assert answer is None or 400 <= answer.status < 500, answer
    assert db.order_count() == 0
    assert api.create().status_code == 201


def test_a_well_framed_chunked_order_is_created_like_any_other(api: Client, db: Database) -> None:
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, BODY[:5], len(BODY) - 5, BODY[5:])
    answer = exchange(api.url, order_request(b"/orders", b"Transfer-Encoding: chunked", body=chunked))

    assert answer is not None and answer.status == 201
    assert db.order_count() == 1
