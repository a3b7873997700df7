"""Generated input: schemathesis against the running function, from its live document,
and Hypothesis over the pure parts that decide what "the same request" means."""

from __future__ import annotations

import itertools
import json
import string
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devserver.copies import FunctionCopy
from function.fingerprint import fingerprint
from function.problems import InvalidIdempotencyKey
from function.validation import MAX_KEY_LENGTH, decode_json, parse_idempotency_key
from hardening.documented import documented_operations, load_document
from support import Database

FUZZ_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation and mode: enough to walk every parameter's edges, small enough that the
# whole file stays well under a minute on two shared cores.
EXAMPLES_PER_OPERATION = 50
STATEFUL_SCENARIOS = 20
KEY_NUMBERS = itertools.count()


@pytest.fixture
def live_schema(api_copy: FunctionCopy, db: Database) -> schemathesis.BaseSchema:
    """The document as the running copy serves it, fuzzed in valid and invalid variants."""
    schema = schemathesis.openapi.from_url(api_copy.url + "/openapi.json")
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES_PER_OPERATION
    )
    return schema


# Headers that frame the message, not the request: uvicorn's parser answers a malformed
# one itself (a text/plain 400, before the function sees it), and tests/test_framing.py
# sends those byte for byte. Generated here, they would test the generator's HTTP client.
FRAMING_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "host", "te", "upgrade", "expect"})


def without_framing(headers: dict[str, str] | None) -> dict[str, str] | None:
    if headers is None:
        return None
    return {name: value for name, value in headers.items() if name.lower() not in FRAMING_HEADERS}


def fuzzed_operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid input; those that take any input with invalid input too."""
    document = load_document()
    cases = []
    for method, path in sorted(documented_operations(document)):
        cases.append((method, path, GenerationMode.POSITIVE))
        operation = document["paths"][path][method.lower()]
        if operation.get("parameters") or operation.get("requestBody"):
            cases.append((method, path, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(("method", "path", "mode"), fuzzed_operations(), ids=str)
def test_no_generated_request_gets_a_5xx_or_an_answer_the_document_does_not_describe(
    live_schema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = live_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    def call_and_check(case) -> None:
        case.headers = without_framing(case.headers)
        case.call_and_validate(checks=FUZZ_CHECKS, timeout=30)

    call_and_check()


def test_create_then_get_and_list_sequences_keep_to_the_document(live_schema) -> None:
    """Valid requests only, following the document's links from a 201 to the order and
    the list; a request that names no profile or key gets them, as a gateway and a
    well-behaved client would add them, so most creates succeed and the links are walked."""
    live_schema.config.generation.update(modes=[GenerationMode.POSITIVE])

    class CreateThenRead(live_schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case) -> None:
            names_a_profile = "X-Profile-Id" in (case.headers or {}) or "profileId" in (case.query or {})
            if case.path != "/" and not names_a_profile:
                case.headers = {**(case.headers or {}), "X-Profile-Id": "fuzz"}
            if case.method == "POST" and case.path == "/orders":
                case.headers = {"Idempotency-Key": f"fuzz-{next(KEY_NUMBERS)}", **(case.headers or {})}

        def validate_response(self, response, case, **kwargs) -> None:
            case.validate_response(response, checks=FUZZ_CHECKS)

    CreateThenRead.run(settings=settings(
        max_examples=STATEFUL_SCENARIOS, stateful_step_count=6, deadline=None,
        suppress_health_check=list(HealthCheck),
    ))


# --- the fingerprint: "the same body" is the same JSON value -------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    # Valid Unicode only: a lone surrogate (which a JSON \u escape can spell) is refused as
    # input before anything is fingerprinted (tests/test_hostile_input.py).
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), inner, max_size=4),
    max_leaves=20,
)
whitespace = st.text(" \t\n\r", max_size=3)


@st.composite
def respaced_and_reordered(draw: st.DrawFn, value: Any) -> str:
    """The same JSON value as other text: members shuffled, whitespace anywhere allowed."""
    gap = draw(whitespace)
    if isinstance(value, dict):
        members = draw(st.permutations(list(value.items())))
        parts = [
            draw(whitespace) + json.dumps(name) + draw(whitespace) + ":" + draw(respaced_and_reordered(item))
            for name, item in members
        ]
        return gap + "{" + ",".join(parts) + draw(whitespace) + "}" + draw(whitespace)
    if isinstance(value, list):
        parts = [draw(respaced_and_reordered(item)) for item in value]
        return gap + "[" + ",".join(parts) + draw(whitespace) + "]" + draw(whitespace)
    return gap + json.dumps(value, ensure_ascii=draw(st.booleans())) + draw(whitespace)


@given(st.data(), st.dictionaries(
    st.text(st.characters(codec="utf-8"), max_size=8), json_values, max_size=6))
@settings(max_examples=200, deadline=None)
def test_reordered_and_respaced_json_has_the_same_fingerprint(data: st.DataObject, value: dict[str, Any]) -> None:
    text = data.draw(respaced_and_reordered(value))

    assert fingerprint(decode_json(text.encode())) == fingerprint(value)


@given(json_values, json_values)
@settings(max_examples=200, deadline=None)
def test_different_json_values_have_different_fingerprints(first: Any, second: Any) -> None:
    assume(first != second)

    assert fingerprint(first) != fingerprint(second)


# --- the Idempotency-Key parser --------------------------------------------------------

VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))
PRINTABLE_ASCII = " " + VISIBLE_ASCII
bare_keys = st.text(VISIBLE_ASCII, min_size=1, max_size=MAX_KEY_LENGTH).filter(lambda k: not k.startswith('"'))
printable_keys = st.text(PRINTABLE_ASCII, min_size=1, max_size=MAX_KEY_LENGTH)
# A control character or anything beyond ASCII, inside a key (a tab or space at either
# end would be whitespace around the header value, not part of the key).
forbidden = st.characters(codec="utf-8", exclude_characters=PRINTABLE_ASCII)


def rfc8941_string(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(bare_keys)
def test_a_bare_key_of_visible_ascii_is_itself(key: str) -> None:
    assert parse_idempotency_key(key) == key


@given(printable_keys)
def test_the_rfc8941_string_form_of_any_printable_key_is_that_key(key: str) -> None:
    assert parse_idempotency_key(rfc8941_string(key)) == key


@given(st.text(string.ascii_letters, min_size=1, max_size=8), forbidden,
       st.text(string.ascii_letters, min_size=1, max_size=8), st.booleans())
def test_a_key_holding_a_control_or_non_ascii_character_is_refused(
    before: str, bad: str, after: str, quoted: bool
) -> None:
    key = before + bad + after
    with pytest.raises(InvalidIdempotencyKey):
        parse_idempotency_key(rfc8941_string(key) if quoted else key)


@given(st.sampled_from(VISIBLE_ASCII.replace('"', "")), st.booleans())
def test_255_characters_are_accepted_and_256_refused(character: str, quoted: bool) -> None:
    def form(key: str) -> str:
        return rfc8941_string(key) if quoted else key

    assert parse_idempotency_key(form(character * MAX_KEY_LENGTH)) == character * MAX_KEY_LENGTH
    with pytest.raises(InvalidIdempotencyKey):
        parse_idempotency_key(form(character * (MAX_KEY_LENGTH + 1)))
