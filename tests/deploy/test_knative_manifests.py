"""knative/: the orders Service, its Broker, Trigger and dead-letter sink, checked offline.

Schemas and CRD models catch typos and wrong types; the rest of this file checks what
no schema knows: Knative's admission rules and the numbers that must agree between the
Service, the ConfigMap, the Trigger and PostgreSQL.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from .manifests import (
    KNATIVE,
    NAMESPACE,
    POSTGRES_K8S,
    REDIS_RELEASE,
    Manifest,
    find,
    is_knative,
    load_directory,
    load_documents,
    pgbouncer_ini,
    render_chart,
    rendered_manifests,
    unknown_fields,
    validate_core,
    validate_knative,
)

# Fields the 1.17 models lack although Knative 1.17 serves them (delivery-timeout is a
# beta feature, on by default).
FIELDS_MISSING_FROM_THE_MODELS = {".spec.delivery.timeout"}

RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
RESERVED_PORTS = {8012, 8013, 8022, 8008, 9090, 9091}
MAX_REVISION_TIMEOUT_SECONDS = 600  # Knative's default max-revision-timeout-seconds

CREATE_EVENT = "com.example.order.create"
REPLY_EVENT = "com.example.order.created"

# Every variable the function (function/settings.py) and gunicorn read from the
# ConfigMap. The URLs are secrets and must not be among them.
CONFIG_KEYS = {
    "IDEMPOTENCY_TTL_SECONDS", "IDEMPOTENCY_LEASE_SECONDS", "IDEMPOTENCY_WAIT_SECONDS",
    "IDEMPOTENCY_KEY_REQUIRED", "IDEMPOTENCY_ON_MISMATCH", "AUTO_MIGRATE",
    "DATABASE_POOLING", "DATABASE_POOL_SIZE", "DATABASE_CONNECT_TIMEOUT_SECONDS",
    "DATABASE_STATEMENT_TIMEOUT_SECONDS", "REDIS_TIMEOUT_SECONDS", "LOG_LEVEL",
    "WORKERS", "MIGRATION_TIMEOUT_SECONDS", "OUTBOX_RETRY_SECONDS", "DATABASE_BATCH_MAX",
}
SECRET_KEYS = {"DATABASE_URL", "REDIS_URL"}


def all_manifests() -> list[Manifest]:
    return [doc for docs in load_directory(KNATIVE).values() for doc in docs
            if doc.get("kind") != "Kustomization"]


def orders_service() -> Manifest:
    return find(all_manifests(), "Service", "orders")


def revision_annotations() -> dict[str, str]:
    return orders_service()["spec"]["template"]["metadata"]["annotations"]


def revision_spec() -> Manifest:
    return orders_service()["spec"]["template"]["spec"]


def the_container() -> Manifest:
    (container,) = revision_spec()["containers"]
    return container


def config() -> dict[str, str]:
    return find(all_manifests(), "ConfigMap", "orders-config")["data"]


def trigger() -> Manifest:
    return find(all_manifests(), "Trigger", "orders-create")


def iso8601_seconds(duration: str) -> float:
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", duration)
    assert match, f"expected a PT<seconds>S duration, got {duration!r}"
    return float(match.group(1))


# How long past PostgreSQL's statement_timeout the function's socket still waits.
SOCKET_SLACK_SECONDS = 1.0


def longest_create_seconds(settings: dict[str, str]) -> float:
    """Worst case of one create with these settings: waiting for a pooled connection
    (bounded by the connect timeout), connecting, the INSERT and, after a conflict, the
    SELECT (each its statement timeout plus the socket's slack), and the Redis claim
    and finish calls."""
    connect = float(settings["DATABASE_CONNECT_TIMEOUT_SECONDS"])
    statement = float(settings["DATABASE_STATEMENT_TIMEOUT_SECONDS"]) + SOCKET_SLACK_SECONDS
    redis = float(settings["REDIS_TIMEOUT_SECONDS"])
    return connect + connect + 2 * statement + 2 * redis


# --- schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in KNATIVE.glob("*.yaml")))
def test_every_knative_directory_file_is_valid_yaml_with_kinds(name):
    documents = load_documents(KNATIVE / name)
    assert documents
    assert all("apiVersion" in doc and "kind" in doc for doc in documents)


def test_every_core_manifest_passes_the_kubernetes_schema():
    core = [doc for doc in all_manifests() if not is_knative(doc)]
    assert {doc["kind"] for doc in core} == {"Namespace", "ConfigMap", "Secret"}
    for doc in core:
        validate_core(doc)


def test_the_service_pod_spec_passes_the_kubernetes_pod_schema():
    # Knative's revision spec is a pod spec plus four fields of its own; and Knative
    # fills in a probe's missing port with the traffic port, which a pod must name.
    for name in ("orders", "orders-dead-letter"):
        spec = copy.deepcopy(find(all_manifests(), "Service", name)["spec"]["template"]["spec"])
        for knative_only in ("containerConcurrency", "timeoutSeconds",
                             "responseStartTimeoutSeconds", "idleTimeoutSeconds"):
            spec.pop(knative_only, None)
        for container in spec["containers"]:
            traffic_port = container.get("ports", [{"containerPort": 8080}])[0]["containerPort"]
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                action = container.get(probe, {}).get("httpGet")
                if action is not None:
                    action.setdefault("port", traffic_port)
        validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": spec})


def test_every_knative_manifest_passes_its_crd_model_with_no_unknown_field():
    knative = [doc for doc in all_manifests() if is_knative(doc)]
    assert sorted(doc["kind"] for doc in knative) == [
        "Broker", "PingSource", "Service", "Service", "SinkBinding", "Trigger"]
    for doc in knative:
        dumped = validate_knative(doc)
        unknown = set(unknown_fields(doc, dumped)) - FIELDS_MISSING_FROM_THE_MODELS
        assert not unknown, f"{doc['kind']} {doc['metadata']['name']}: {sorted(unknown)}"


def test_the_unknown_field_check_catches_a_misspelled_field():
    service = orders_service()
    service["spec"]["template"]["spec"]["containerConcurency"] = 8
    service["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    unknown = set(unknown_fields(service, validate_knative(service)))
    assert unknown == {
        ".spec.template.spec.containerConcurency",
        ".spec.template.spec.containers[0].readinesProbe",
    }


def test_kustomize_applies_every_file_but_the_namespace_and_the_secret_example():
    # Not the Namespace: `kubectl delete -k knative/` must not take the databases along.
    (kustomization,) = load_documents(KNATIVE / "kustomization.yaml")
    everything = {p.name for p in KNATIVE.glob("*.yaml")}
    assert set(kustomization["resources"]) == everything - {
        "kustomization.yaml", "namespace.yaml", "secret.example.yaml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_builds_the_directory_offline():
    # --server points at a closed port: kustomize needs no cluster, and must not find one.
    result = subprocess.run(
        ["kubectl", "kustomize", str(KNATIVE), "--server=http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    kinds = re.findall(r"^kind: (\w+)$", result.stdout, flags=re.MULTILINE)
    assert sorted(kinds) == ["Broker", "ConfigMap", "PingSource", "Service", "Service", "SinkBinding", "Trigger"]


# --- Knative admission rules ---------------------------------------------------------


def test_every_annotation_and_label_value_is_a_string():
    for doc in all_manifests():
        metadatas = [doc["metadata"]]
        if "template" in doc.get("spec", {}):
            metadatas.append(doc["spec"]["template"].get("metadata", {}))
        for metadata in metadatas:
            for field in ("annotations", "labels"):
                for key, value in metadata.get(field, {}).items():
                    assert isinstance(value, str), f"{doc['metadata']['name']} {key}: {value!r}"


def test_every_configmap_value_is_a_string():
    assert all(isinstance(value, str) for value in config().values())


def test_the_service_has_one_container_with_one_unreserved_http_port():
    for name in ("orders", "orders-dead-letter"):
        service = find(all_manifests(), "Service", name)
        containers = service["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        ports = containers[0].get("ports", [])
        assert len(ports) <= 1
        for port in ports:
            assert port["containerPort"] not in RESERVED_PORTS
            assert port.get("name", "") in ("", "http1", "h2c")
            assert port.get("protocol", "TCP") == "TCP"
    assert the_container()["ports"] == [{"containerPort": 8080}]


def test_no_env_var_or_configmap_key_sets_a_knative_reserved_name():
    names = {env["name"] for env in the_container().get("env", [])} | set(config())
    assert not names & RESERVED_ENV
    assert not [name for name in names if name.startswith("K_")]


def test_the_request_timeout_is_within_knatives_limit():
    assert 0 < revision_spec()["timeoutSeconds"] <= MAX_REVISION_TIMEOUT_SECONDS


def test_the_readiness_probe_is_healthz_on_the_traffic_port_with_aggressive_probing():
    probe = the_container()["readinessProbe"]
    assert probe["httpGet"]["path"] == "/healthz"
    assert "port" not in probe["httpGet"]  # a named or numbered port must match the container's
    if not probe.get("periodSeconds"):
        # Knative rejects these with aggressive (periodSeconds 0/unset) probing.
        assert "timeoutSeconds" not in probe and "failureThreshold" not in probe
    assert "livenessProbe" not in the_container()


def test_the_image_is_the_dev_local_one_knative_does_not_resolve():
    assert the_container()["image"] == "dev.local/orders:0.1.0"
    assert the_container()["imagePullPolicy"] != "Always"


def test_the_container_runs_as_non_root_without_privilege_escalation():
    context = the_container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_the_root_filesystem_is_read_only_with_tmp_an_emptydir_the_service_declares():
    assert the_container()["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {volume["name"]: volume for volume in revision_spec()["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in the_container()["volumeMounts"]}
    # /tmp is where the function's writes go (tests/deploy/test_container.py runs the image
    # with only /tmp and /dev/shm writable); /dev/shm is the runtime's own tmpfs.
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert set(mounts.values()) <= set(volumes)


# --- scaling and timing agree with the function's settings ---------------------------


def test_the_service_scales_to_zero_with_a_bounded_maximum():
    annotations = revision_annotations()
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert int(annotations["autoscaling.knative.dev/max-scale"]) > 0  # "0" is unlimited


def test_the_autoscaling_target_is_half_the_concurrency_limit():
    # Knative scales up at 70 % of the target; the rest up to the limit is burst room.
    limit = revision_spec()["containerConcurrency"]
    assert int(revision_annotations()["autoscaling.knative.dev/target"]) * 2 == limit
    assert limit > 8  # no longer bounded by threads: a waiting request holds none


def test_the_request_timeout_covers_a_duplicates_wait_plus_the_longest_create():
    settings = config()
    wait = float(settings["IDEMPOTENCY_WAIT_SECONDS"])
    assert revision_spec()["timeoutSeconds"] >= wait + longest_create_seconds(settings)


def test_the_lease_outlasts_the_longest_create_so_a_live_claim_never_expires():
    settings = config()
    assert float(settings["IDEMPOTENCY_LEASE_SECONDS"]) > longest_create_seconds(settings)
    assert float(settings["IDEMPOTENCY_LEASE_SECONDS"]) >= revision_spec()["timeoutSeconds"]


def test_the_worst_case_connections_fit_one_pgbouncer_pods_max_client_conn():
    settings = config()
    per_revision = (int(settings["DATABASE_POOL_SIZE"]) * int(settings["WORKERS"])
                    * int(revision_annotations()["autoscaling.knative.dev/max-scale"]))
    assert per_revision == 400  # the number the comments state
    # A rollout runs the old revision's copies beside the new ones, and the Service in
    # front of PgBouncer may send all of them to one pod.
    assert 2 * per_revision <= int(pgbouncer_ini()["pgbouncer"]["max_client_conn"])


def test_the_function_is_told_its_database_url_is_a_transaction_mode_pooler():
    # The secret example's DATABASE_URL names PgBouncer (checked below, with the hosts).
    assert config()["DATABASE_POOLING"] == "transaction"
    assert pgbouncer_ini()["pgbouncer"]["pool_mode"] == "transaction"


def test_the_pool_is_far_smaller_than_the_requests_a_copy_holds():
    # Requests hold a connection only for their SQL: a few serve many in flight.
    assert int(config()["DATABASE_POOL_SIZE"]) * 8 <= revision_spec()["containerConcurrency"]


# --- configuration and secrets -------------------------------------------------------


def test_the_configmap_holds_exactly_the_variables_the_function_reads():
    assert set(config()) == CONFIG_KEYS
    assert config()["WORKERS"] == "1"


def test_the_database_and_redis_urls_come_from_the_secret_by_key():
    env = {item["name"]: item for item in the_container()["env"]}
    secret = find(load_documents(KNATIVE / "secret.example.yaml"), "Secret", "orders-secrets")
    for name in SECRET_KEYS:
        reference = env[name]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": "orders-secrets", "key": name}
        assert name in secret["stringData"]
        assert "value" not in env[name]
    assert not SECRET_KEYS & set(config())


def test_the_configmap_the_service_reads_is_the_one_in_the_directory():
    (source,) = the_container()["envFrom"]
    assert source == {"configMapRef": {"name": "orders-config"}}


def test_the_secret_example_holds_only_placeholders_pointing_at_the_real_hosts():
    secret = find(load_documents(KNATIVE / "secret.example.yaml"), "Secret", "orders-secrets")
    database = urlsplit(secret["stringData"]["DATABASE_URL"])
    redis = urlsplit(secret["stringData"]["REDIS_URL"])
    assert "CHANGE-ME" in database.password and "CHANGE-ME" in redis.password
    assert database.scheme == "postgresql" and redis.scheme == "redis"

    pgbouncer = find(load_documents(POSTGRES_K8S / "pgbouncer.yaml"), "Service", "pgbouncer")
    assert database.hostname == f"pgbouncer.{NAMESPACE}.svc.cluster.local"
    assert database.port == pgbouncer["spec"]["ports"][0]["port"]

    redis_service = find(rendered_manifests(render_chart()), "Service", REDIS_RELEASE)
    assert redis.hostname == f"{REDIS_RELEASE}.{NAMESPACE}.svc.cluster.local"
    assert redis.port == redis_service["spec"]["ports"][0]["port"]


def test_every_namespaced_object_is_in_the_orders_namespace():
    for doc in all_manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE


# --- eventing ------------------------------------------------------------------------


def test_the_trigger_takes_exactly_the_create_event_and_never_the_reply():
    attributes = trigger()["spec"]["filter"]["attributes"]
    assert attributes == {"type": CREATE_EVENT}
    # The Broker matches the function's reply against every Trigger: none may take it.
    for doc in all_manifests():
        if doc["kind"] == "Trigger":
            filter_type = doc["spec"].get("filter", {}).get("attributes", {}).get("type")
            assert filter_type is not None, "a Trigger without a type filter takes replies too"
            assert filter_type != REPLY_EVENT


def test_the_trigger_delivers_to_the_orders_service_on_the_default_broker():
    spec = trigger()["spec"]
    broker = find(all_manifests(), "Broker", spec["broker"])
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == (
        "MTChannelBasedBroker")
    assert spec["subscriber"]["ref"] == {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "orders"}


def test_the_sink_binding_points_the_orders_service_at_the_broker_with_valid_overrides():
    binding = find(all_manifests(), "SinkBinding", "orders-events")["spec"]
    assert binding["subject"] == {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "orders"}
    assert binding["sink"]["ref"]["kind"] == "Broker"
    find(all_manifests(), "Broker", binding["sink"]["ref"]["name"])
    # What the binding injects as K_CE_OVERRIDES must pass the function's own check.
    from function.settings import Settings

    overrides = json.dumps({"extensions": binding["ceOverrides"]["extensions"]})
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u@db/orders", "REDIS_URL": "redis://r/0",
                                  "K_SINK": "http://broker-ingress.knative-eventing.svc/orders/default",
                                  "K_CE_OVERRIDES": overrides})
    assert dict(settings.k_ce_overrides) == binding["ceOverrides"]["extensions"]


def test_the_ping_source_wakes_the_orders_service_itself_every_ten_minutes():
    ping = find(all_manifests(), "PingSource", "orders-outbox")["spec"]
    assert ping["sink"]["ref"] == {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "orders"}
    # The cost stated in events-out.yaml and docs/events-out.md: 144 wake-ups a day.
    assert ping["schedule"] == "*/10 * * * *"
    assert "144" in (KNATIVE / "events-out.yaml").read_text()
    assert "every 10 minutes" in (KNATIVE.parent / "docs" / "events-out.md").read_text()


def test_failed_deliveries_are_retried_then_dead_lettered_to_an_existing_service():
    delivery = trigger()["spec"]["delivery"]
    assert delivery["retry"] == 5
    assert delivery["backoffPolicy"] == "exponential"
    assert delivery["backoffDelay"] == "PT0.5S"
    sink = delivery["deadLetterSink"]["ref"]
    assert sink["kind"] == "Service" and sink["apiVersion"] == "serving.knative.dev/v1"
    dead_letter = find(all_manifests(), "Service", sink["name"])
    assert dead_letter["metadata"]["labels"]["networking.knative.dev/visibility"] == (
        "cluster-local")


def test_an_attempt_may_take_as_long_as_the_service_allows_but_not_longer():
    timeout = iso8601_seconds(trigger()["spec"]["delivery"]["timeout"])
    assert timeout == revision_spec()["timeoutSeconds"]


def test_the_retries_outlast_the_lease_of_a_claim_left_by_a_crashed_copy():
    # Each 409 comes after IDEMPOTENCY_WAIT_SECONDS; the waits between tries double.
    delivery = trigger()["spec"]["delivery"]
    settings = config()
    retries = delivery["retry"]
    backoff = sum(iso8601_seconds(delivery["backoffDelay"]) * 2**n for n in range(retries))
    last_try_starts_after = retries * float(settings["IDEMPOTENCY_WAIT_SECONDS"]) + backoff
    assert last_try_starts_after > float(settings["IDEMPOTENCY_LEASE_SECONDS"])
