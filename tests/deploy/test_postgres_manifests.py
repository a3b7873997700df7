"""postgres/k8s/: PostgreSQL's StatefulSet, headless Service and example Secret, and the
PgBouncer (transaction pooling) in front of it, with its connection budget checked."""

from __future__ import annotations

from pathlib import PurePosixPath

from .manifests import (
    NAMESPACE,
    POSTGRES_K8S,
    Manifest,
    find,
    load_directory,
    load_documents,
    pgbouncer_ini,
    validate_core,
)

# Connections kept free at PostgreSQL beyond PgBouncer's: a migration run and a few
# admin sessions (psql, monitoring). The same reserve as tests/deploy/test_knative_manifests.py.
ADMIN_CONNECTIONS = 10


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
    assert kinds == ["ConfigMap", "Deployment", "Secret", "Service", "Service", "StatefulSet"]
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


def server_settings() -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in container()["args"] if "=" in arg)


def test_max_connections_is_stated_explicitly():
    args = container()["args"]
    assert "max_connections=100" in args
    assert "superuser_reserved_connections=3" in args


def test_the_wal_settings_are_shipped_and_the_wal_fits_the_volume():
    """lz4-compressed full-page images and a long checkpoint interval (operations.md,
    "PostgreSQL settings"); a max_wal_size the volume holds, with room for the data."""
    settings = server_settings()
    assert settings["wal_compression"] == "lz4"
    assert settings["checkpoint_timeout"] == "30min"
    (claim,) = statefulset()["spec"]["volumeClaimTemplates"]
    volume_gb = int(claim["spec"]["resources"]["requests"]["storage"].removesuffix("Gi"))
    assert int(settings["max_wal_size"].removesuffix("GB")) <= volume_gb / 2


def test_credentials_come_from_the_secret_the_example_describes():
    (source,) = container()["envFrom"]
    secret = find(load_documents(POSTGRES_K8S / "secret.example.yaml"), "Secret",
                  source["secretRef"]["name"])
    assert set(secret["stringData"]) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    assert "CHANGE-ME" in secret["stringData"]["POSTGRES_PASSWORD"]


def test_kustomize_applies_everything_but_the_secret_example():
    (kustomization,) = load_documents(POSTGRES_K8S / "kustomization.yaml")
    assert set(kustomization["resources"]) == {"service.yaml", "statefulset.yaml", "pgbouncer.yaml"}


def test_postgres_runs_as_non_root():
    pod = statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0


# --- PgBouncer -----------------------------------------------------------------------


def pgbouncer_deployment() -> Manifest:
    return find(manifests(), "Deployment", "pgbouncer")


def pgbouncer_container() -> Manifest:
    (only,) = pgbouncer_deployment()["spec"]["template"]["spec"]["containers"]
    return only


def test_pgbouncer_pools_per_transaction():
    settings = pgbouncer_ini()["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    # Session settings must not be accepted and then silently dropped.
    assert "statement_timeout" not in settings.get("ignore_startup_parameters", "")


def test_pgbouncer_passes_every_database_to_the_postgres_service():
    (target,) = pgbouncer_ini()["databases"].values()
    fields = dict(part.split("=", 1) for part in target.split())
    postgres = find(manifests(), "Service", "postgres")
    assert fields["host"] == f"postgres.{NAMESPACE}.svc.cluster.local"
    assert int(fields["port"]) == postgres["spec"]["ports"][0]["port"]


def test_pgbouncers_server_connections_fit_postgres_max_connections_even_during_its_rollout():
    settings = pgbouncer_ini()["pgbouncer"]
    per_pod = int(settings["max_db_connections"])
    assert int(settings["default_pool_size"]) + int(settings["reserve_pool_size"]) <= per_pod
    spec = pgbouncer_deployment()["spec"]
    pods_at_most = spec["replicas"] + spec["strategy"]["rollingUpdate"]["maxSurge"]
    assert pods_at_most * per_pod == 75  # the number the comments state
    usable = int(server_settings()["max_connections"]) - int(server_settings()["superuser_reserved_connections"])
    assert pods_at_most * per_pod + ADMIN_CONNECTIONS <= usable


def test_pgbouncer_listens_where_its_service_and_probes_point():
    port = int(pgbouncer_ini()["pgbouncer"]["listen_port"])
    (container_port,) = pgbouncer_container()["ports"]
    assert container_port["containerPort"] == port
    service = find(manifests(), "Service", "pgbouncer")
    assert "clusterIP" not in service["spec"]  # spread over the pods, not headless
    assert service["spec"]["ports"][0]["targetPort"] == container_port["name"]
    assert service["spec"]["selector"].items() <= (
        pgbouncer_deployment()["spec"]["template"]["metadata"]["labels"].items())
    assert pgbouncer_container()["readinessProbe"]["tcpSocket"]["port"] == container_port["name"]


def test_pgbouncer_reads_its_mounted_config_and_an_auth_file_made_from_the_secret():
    container = pgbouncer_container()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert container["command"] == ["pgbouncer", f"{mounts['config']}/pgbouncer.ini"]
    auth_file = PurePosixPath(pgbouncer_ini()["pgbouncer"]["auth_file"])
    assert str(auth_file.parent) == mounts["auth"]
    (init,) = pgbouncer_deployment()["spec"]["template"]["spec"]["initContainers"]
    assert init["envFrom"] == container_env_sources()
    assert str(auth_file) in init["command"][-1]
    volumes = {v["name"]: v for v in pgbouncer_deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["auth"]["emptyDir"]["medium"] == "Memory"  # the password never lands on disk
    assert volumes["config"]["configMap"]["name"] == "pgbouncer"


def container_env_sources() -> list[Manifest]:
    """The Secret PostgreSQL itself is initialised from: one user and password for both."""
    return container()["envFrom"]


def test_pgbouncer_runs_as_non_root_on_a_read_only_root():
    pod = pgbouncer_deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pgbouncer_container()["securityContext"]["readOnlyRootFilesystem"] is True
    assert pgbouncer_ini()["pgbouncer"]["unix_socket_dir"] == ""
