"""AUTH_MODE=jwt: the profile is a verified bearer token's subject, nothing else (the real
app in this process, started with these settings: tests/inprocess.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support import Client, Database, assert_problem
from function.settings import ConfigError, Settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
AUDIENCE, ISSUER = "orders-api", "https://issuer.example"


def token(sub: str = "alice", *, key: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": sub, "exp": now + 300, "aud": AUDIENCE, "iss": ISSUER, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=algorithm)


def hs256_signed_with(key: bytes, **claims: Any) -> str:
    """Built by hand: PyJWT itself refuses to sign with a PEM key as an HMAC secret."""
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(
        json.dumps({"exp": int(time.time()) + 300, **claims}).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def hs256(serve_in_process: Callable[..., Client]) -> Client:
    return serve_in_process(AUTH_MODE="jwt", JWT_SECRET=SECRET, JWT_AUDIENCE=AUDIENCE, JWT_ISSUER=ISSUER)


def test_a_valid_token_acts_as_its_subject(hs256: Client, db: Database) -> None:
    created = hs256.create(profile=None, headers=bearer(token("alice")))

    assert created.status_code == 201 and created.json()["profileId"] == "alice"
    listed = hs256.get("/orders", profile=None, headers=bearer(token("alice")))
    assert [o["orderId"] for o in listed.json()["orders"]] == [created.json()["orderId"]]


def test_a_profile_header_or_query_naming_the_subject_is_accepted_and_another_is_403(hs256: Client) -> None:
    assert hs256.create(profile="alice", headers=bearer(token("alice"))).status_code == 201
    assert_problem(hs256.create(profile="bob", headers=bearer(token("alice"))), 403, "different profile")
    other = hs256.get("/orders", profile=None, params={"profileId": "bob"}, headers=bearer(token("alice")))
    assert_problem(other, 403)


@pytest.mark.parametrize(
    ("authorization", "named"),
    [
        pytest.param(None, "Bearer", id="missing"),
        pytest.param("Basic YWxpY2U6cHc=", "Bearer", id="wrong-scheme"),
        pytest.param("Bearer " + token(exp=int(time.time()) - 60), "expired", id="expired"),
        pytest.param("Bearer " + token(nbf=int(time.time()) + 600), "not valid yet", id="not-yet-valid"),
        pytest.param("Bearer " + token(key="another-secret-that-is-long-enough!!"), "not valid", id="bad-signature"),
        pytest.param("Bearer " + token(aud="someone-else"), "audience", id="wrong-audience"),
        pytest.param("Bearer " + token(iss="https://evil.example"), "issuer", id="wrong-issuer"),
        pytest.param("Bearer " + token(exp=None), "not valid", id="no-expiry"),
        pytest.param("Bearer " + token(sub="has space"), "subject", id="bad-subject"),
        pytest.param("Bearer " + jwt.encode({"sub": "alice", "exp": 2**33}, "", algorithm="none"),
                     "not valid", id="alg-none"),
        pytest.param("Bearer not.a.token", "not valid", id="garbage"),
    ],
)
def test_a_missing_or_invalid_token_is_a_401_with_a_challenge(
    hs256: Client, db: Database, authorization: str | None, named: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = hs256.create(profile=None, headers=headers)

    assert_problem(response, 401, named)
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="orders"')
    assert db.order_count() == 0


def test_es256_tokens_are_verified_with_a_public_key_file(serve_in_process: Callable[..., Client], tmp_path: Path) -> None:
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "public.pem"
    pem.write_bytes(private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    client = serve_in_process(AUTH_MODE="jwt", JWT_PUBLIC_KEY_FILE=str(pem))

    good = client.create(profile=None, headers=bearer(
        token("erin", key=private_key, algorithm="ES256", aud=None, iss=None)))
    # An HS256 token "signed" with the public key must not pass (algorithm confusion).
    forged = client.create(profile=None, headers=bearer(hs256_signed_with(pem.read_bytes(), sub="erin")))

    assert good.status_code == 201 and good.json()["profileId"] == "erin"
    assert_problem(forged, 401)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "JWT_SECRET or JWT_PUBLIC_KEY_FILE"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"JWT_PUBLIC_KEY_FILE": "/nonexistent.pem"}, "JWT_PUBLIC_KEY_FILE"),
        ({"JWT_SECRET": SECRET, "JWT_PUBLIC_KEY_FILE": "/x.pem"}, "exactly one"),
    ],
)
def test_jwt_mode_without_exactly_one_usable_key_stops_the_start_up(env: dict[str, str], named: str) -> None:
    base = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x", "AUTH_MODE": "jwt"}
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**base, **env})
