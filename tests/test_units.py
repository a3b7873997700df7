"""Pure parts, tested directly: key parser, fingerprint, decision table, settings."""

from __future__ import annotations

import pytest

from function.fingerprint import fingerprint
from function.problems import InvalidIdempotencyKey, InvalidParameter
from function.records import Claimed, Create, Done, InFlight, Reject, Replay, Wait, decide, decode, encode, redis_key
from function.route_table import Endpoint, match
from function.settings import ConfigError, Settings, declarations, one_from_env
from function.targets import TargetError, parse_database_url, parse_redis_url
from function.validation import encode_cursor, parse_cursor, parse_idempotency_key

URLS = {"DATABASE_URL": "postgresql://u:secret@db:5432/orders", "REDIS_URL": "redis://cache:6379/0"}


@pytest.mark.parametrize(
    ("raw", "key"),
    [("abc", "abc"), ('"abc"', "abc"), (' "a b" ', "a b"), (r'"say \"hi\""', 'say "hi"'),
     (r'"back\\slash"', "back\\slash"), ("~!@#$%^&*()", "~!@#$%^&*()")],
)
def test_bare_and_rfc8941_string_forms_parse_to_the_same_key(raw: str, key: str) -> None:
    assert parse_idempotency_key(raw) == key


@pytest.mark.parametrize("raw", ["", " ", "a b", "k" * 256, '"' + "k" * 256 + '"', '"a', '"\\n"', "é"])
def test_keys_outside_the_rules_are_refused(raw: str) -> None:
    with pytest.raises(InvalidIdempotencyKey):
        parse_idempotency_key(raw)


def test_the_fingerprint_ignores_member_order_and_whitespace_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint({"a": "1"}) != fingerprint({"a": 1})


DIFFERENT = "other-fingerprint"


DONE = Done("fp", "id", b"{}")


@pytest.mark.parametrize(
    ("found", "fp", "replay_on_mismatch", "action"),
    [
        (Claimed(), "fp", False, Create()),
        (Claimed(), DIFFERENT, False, Create()),
        (Claimed(taken_over=True), "fp", True, Create(taken_over=True)),
        (InFlight("fp", "owner"), "fp", False, Wait()),
        (InFlight("fp", "owner"), DIFFERENT, False, Reject()),
        (InFlight("fp", "owner"), DIFFERENT, True, Wait()),
        (DONE, "fp", False, Replay(DONE)),
        (DONE, DIFFERENT, False, Reject()),
        (DONE, DIFFERENT, True, Replay(DONE)),
    ],
)
def test_every_row_of_the_decision_table(found, fp, replay_on_mismatch, action) -> None:
    assert decide(found, fp, replay_on_mismatch) == action


def test_records_survive_the_trip_through_redis_encoding() -> None:
    fp = "0f" * 32
    for record in (InFlight(fp, "owner"), InFlight(fp, "owner", 1_764_000_000_123), Done(fp, "id", b'{"orderId":"id"}')):
        assert decode(encode(record)) == record


def test_redis_keys_are_namespaced_hashes_never_the_clients_string() -> None:
    key = redis_key("alice", "*\r\nFLUSHALL")
    assert key.startswith(b"idem:v2:") and len(key) == len(b"idem:v2:") + 20 and b"FLUSHALL" not in key
    assert redis_key("alice", "k") != redis_key("bob", "k")


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    assert parse_cursor(encode_cursor(12345)) == 12345
    for forged in ("", "!!!", "djE6", "djE6LTE", "djI6MTA"):
        with pytest.raises(InvalidParameter):
            parse_cursor(forged)


def test_settings_have_the_contracts_defaults() -> None:
    settings = Settings.from_env(URLS)
    assert (settings.idempotency_ttl_seconds, settings.idempotency_lease_seconds) == (86400, 30)
    assert settings.idempotency_wait_seconds == 5
    assert settings.idempotency_key_required is True
    assert settings.idempotency_on_mismatch == "reject"
    assert settings.auto_migrate is True
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "redis://x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://x"}, "REDIS_URL"),
        ({**URLS, "DATABASE_URL": "mysql://u:secret@x"}, "DATABASE_URL"),
        ({**URLS, "IDEMPOTENCY_TTL_SECONDS": "soon"}, "IDEMPOTENCY_TTL_SECONDS"),
        ({**URLS, "IDEMPOTENCY_LEASE_SECONDS": "0"}, "IDEMPOTENCY_LEASE_SECONDS"),
        ({**URLS, "IDEMPOTENCY_KEY_REQUIRED": "maybe"}, "IDEMPOTENCY_KEY_REQUIRED"),
        ({**URLS, "IDEMPOTENCY_ON_MISMATCH": "ignore"}, "IDEMPOTENCY_ON_MISMATCH"),
        ({**URLS, "DATABASE_POOL_SIZE": "-2"}, "DATABASE_POOL_SIZE"),
    ],
)
def test_a_missing_or_malformed_variable_is_named_and_no_password_is_shown(env, named) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert named in str(raised.value) and "secret" not in str(raised.value)


def test_a_sentinel_url_names_every_sentinel_the_service_and_the_database() -> None:
    target = parse_redis_url("redis+sentinel://:pw@s1:26379,s2:26380,[::1]:26381/orders/2")
    assert target.sentinels is not None
    assert target.sentinels.addresses == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert (target.sentinels.service_name, target.sentinels.db, target.sentinels.password) == ("orders", 2, "pw")
    assert "pw" not in repr(target)


def test_a_cluster_url_names_its_seed_nodes_and_tls_and_has_no_database_number() -> None:
    target = parse_redis_url("redis+cluster://:p%40ss@n1:7000,n2:7001,[::1]:7002")
    assert target.cluster is not None and target.sentinels is None
    assert target.cluster.addresses == (("n1", 7000), ("n2", 7001), ("::1", 7002))
    assert (target.cluster.password, target.cluster.tls) == ("p@ss", False)
    assert "p@ss" not in repr(target)
    tls = parse_redis_url("rediss+cluster://orders:pw@n1:7000?ssl_ca_certs=/etc/ca.pem").cluster
    assert tls is not None and (tls.tls, tls.username, tls.ssl_ca_certs) == (True, "orders", "/etc/ca.pem")
    with pytest.raises(TargetError, match="no database number"):
        parse_redis_url("redis+cluster://n1:7000/1")


def test_a_redis_cluster_failure_is_named_by_what_the_cluster_could_not_do() -> None:
    import redis.exceptions

    from function.claims import failure_kind
    from function.labels import RedisFailure

    assert failure_kind(redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")) is RedisFailure.CLUSTER
    assert failure_kind(redis.exceptions.ClusterError("TTL exhausted.")) is RedisFailure.CLUSTER
    assert failure_kind(redis.exceptions.SlotNotCoveredError("slot 7 not covered")) is RedisFailure.CLUSTER
    unreachable = redis.exceptions.RedisClusterException("Redis Cluster cannot be connected")
    unreachable.__cause__ = redis.exceptions.ConnectionError("refused")
    assert failure_kind(unreachable) is RedisFailure.CONNECTION
    assert failure_kind(redis.exceptions.ConnectionError("refused")) is RedisFailure.CONNECTION


def test_a_database_url_is_read_into_its_parts_with_tls_off_unless_asked() -> None:
    target = parse_database_url("postgresql://orders:p%40ss@db.internal:6432/shop")
    assert (target.host, target.port, target.user, target.password, target.database) == (
        "db.internal", 6432, "orders", "p@ss", "shop")
    assert target.sslmode == "disable" and "p@ss" not in repr(target)
    assert parse_database_url("postgresql://db/shop?sslmode=verify-full").sslmode == "verify-full"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity", "1e400"])
def test_a_wait_that_is_not_a_finite_number_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="IDEMPOTENCY_WAIT_SECONDS must be a number"):
        Settings.from_env({**URLS, "IDEMPOTENCY_WAIT_SECONDS": value})


def test_a_tool_reading_one_setting_reads_it_as_a_copy_does() -> None:
    env = {**URLS, "MIGRATION_TIMEOUT_SECONDS": "7", "DATABASE_CONNECT_TIMEOUT_SECONDS": "1.5", "AUTO_MIGRATE": "no"}
    settings = Settings.from_env(env)
    for name, _, _ in declarations():
        assert one_from_env(env, name) == getattr(settings, name), name


@pytest.mark.parametrize(("method", "path", "carries_one", "endpoint"), [
    ("POST", "/", False, Endpoint.EVENT),         # Knative's trigger posts here, whatever the mode
    ("POST", "/orders", True, Endpoint.EVENT),    # a CloudEvent sent to the create path is an event
    ("POST", "/orders/", True, Endpoint.EVENT),   # one trailing slash forgiven there too
    ("POST", "/orders", False, Endpoint.CREATE),
    ("GET", "/orders", True, Endpoint.LIST),      # only a POST is ever an event
])
def test_whether_a_request_is_a_cloudevent_is_decided_by_the_route_table(
    method: str, path: str, carries_one: bool, endpoint: Endpoint,
) -> None:
    assert match(method, path, lambda: carries_one) == (endpoint, None)
