"""postgres/k8s/: PostgreSQL's StatefulSet, headless Service and example Secret."""

from __future__ import annotations

from pathlib import PurePosixPath

from .manifests import (
    NAMESPACE,
    POSTGRES_K8S,
    Manifest,
    find,
    load_directory,
    load_documents,
    validate_core,
)


def manifests() -> list[Manifest]:
    return [doc for name, docs in load_directory(POSTGRES_K8S).items()
            if name != "kustomization.yaml" for doc in docs]


def statefulset() -> Manifest:
    return find(manifests(), "StatefulSet", "postgres")


def container() -> Manifest:
    (only,) = statefulset()["spec"]["template"]["spec"]["containers"]
    return only


def test_every_postgres_manifest_passes_the_kubernetes_schema():
    kinds = sorted(doc["kind"] for doc in manifests())
    assert kinds == ["Secret", "Service", "StatefulSet"]
    for doc in manifests():
        validate_core(doc)
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_the_headless_service_postgres_selects_the_statefulset_pod():
    service = find(manifests(), "Service", "postgres")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == 5432
    assert statefulset()["spec"]["serviceName"] == "postgres"
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_pgdata_is_a_subdirectory_of_the_volume_mount():
    env = {e["name"]: e.get("value") for e in container()["env"]}
    (mount,) = container()["volumeMounts"]
    pgdata, mount_path = PurePosixPath(env["PGDATA"]), PurePosixPath(mount["mountPath"])
    assert pgdata.parent == mount_path  # never the mount root, which may hold lost+found
    (claim,) = statefulset()["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == mount["name"]


def test_readiness_asks_pg_isready_over_tcp():
    command = " ".join(container()["readinessProbe"]["exec"]["command"])
    assert "pg_isready" in command and "-h 127.0.0.1" in command


def test_max_connections_is_stated_explicitly():
    args = container()["args"]
    assert "max_connections=100" in args
    assert "superuser_reserved_connections=3" in args


def test_credentials_come_from_the_secret_the_example_describes():
    (source,) = container()["envFrom"]
    secret = find(load_documents(POSTGRES_K8S / "secret.example.yaml"), "Secret",
                  source["secretRef"]["name"])
    assert set(secret["stringData"]) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    assert "CHANGE-ME" in secret["stringData"]["POSTGRES_PASSWORD"]


def test_kustomize_applies_everything_but_the_secret_example():
    (kustomization,) = load_documents(POSTGRES_K8S / "kustomization.yaml")
    assert set(kustomization["resources"]) == {"service.yaml", "statefulset.yaml"}


def test_postgres_runs_as_non_root():
    pod = statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
