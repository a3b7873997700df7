"""redis-chart/: linted and rendered offline, every rendered object schema-checked."""

from __future__ import annotations

import base64
import subprocess
from typing import Any, Callable, cast

import pytest
import yaml

from devserver.waiting import wait_until

from .manifests import (
    NAMESPACE,
    REDIS_CHART,
    REDIS_RELEASE,
    Manifest,
    find,
    render_chart,
    rendered_manifests,
    validate_core,
)

HOST = f"{REDIS_RELEASE}.{NAMESPACE}.svc.cluster.local"

# Value sets a user is likely to install with; every one must render valid objects.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "auth off": {"auth": {"enabled": False}},
    "existing secret": {"auth": {"existingSecret": "orders-redis-auth",
                                 "existingSecretPasswordKey": "password"}},
    "given password": {"auth": {"password": "s3cretpassword"}},
    "persistence off": {"persistence": {"enabled": False}},
    "no dynamic provisioning": {"persistence": {"storageClass": "-", "size": "5Gi"}},
    "named storage class": {"persistence": {"storageClass": "standard"}},
    "sentinel": {"architecture": "sentinel"},
    "sentinel, auth off, five pods": {"architecture": "sentinel", "auth": {"enabled": False},
                                      "sentinel": {"replicas": 5, "quorum": 3}},
    "cluster": {"architecture": "cluster"},
    "cluster, auth off, four primaries without replicas": {
        "architecture": "cluster", "auth": {"enabled": False}, "cluster": {"primaries": 4, "replicasPerPrimary": 0}},
}
SENTINEL: dict[str, Any] = {"architecture": "sentinel"}
CLUSTER: dict[str, Any] = {"architecture": "cluster"}


def answers(call: Callable[[], object]) -> bool:
    """Whether a Redis call got an answer (the server is up and listening)."""
    import redis

    try:
        call()
    except redis.ConnectionError:
        return False
    return True

def objects(values: dict | None = None) -> list[Manifest]:
    return rendered_manifests(render_chart(values))


def statefulset(values: dict | None = None) -> Manifest:
    return find(objects(values), "StatefulSet", REDIS_RELEASE)


def redis_container(values: dict | None = None) -> Manifest:
    (container,) = statefulset(values)["spec"]["template"]["spec"]["containers"]
    return container


def redis_conf(values: dict | None = None) -> list[str]:
    text = find(objects(values), "ConfigMap", REDIS_RELEASE)["data"]["redis.conf"]
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_chart_lints_clean_in_strict_mode():
    import helm_python

    report = helm_python.lint(str(REDIS_CHART), strict=True, namespace=NAMESPACE,
                              kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_object_passes_the_kubernetes_schema(values):
    rendered = objects(values)
    assert {"StatefulSet", "Service", "ConfigMap"} <= {doc["kind"] for doc in rendered}
    for doc in rendered:
        validate_core(doc)
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_a_misspelled_value_is_rejected_by_the_values_schema():
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match="persistance"):
        render_chart({"persistance": {"enabled": False}})
    with pytest.raises(helm_python.HelmValuesError):
        render_chart({"persistence": {"enabled": "no"}})


def test_the_release_orders_redis_renders_objects_named_orders_redis():
    names = {doc["metadata"]["name"] for doc in objects()}
    assert names == {REDIS_RELEASE}


def test_the_service_is_headless_on_the_port_redis_listens_on():
    service = find(objects(), "Service", REDIS_RELEASE)
    assert service["spec"]["clusterIP"] == "None"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 6379
    (container_port,) = redis_container()["ports"]
    assert container_port["containerPort"] == port["port"]
    assert statefulset()["spec"]["serviceName"] == REDIS_RELEASE
    selector = service["spec"]["selector"]
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_the_chart_makes_its_own_password_secret_only_when_none_is_given():
    def secrets(values):
        return [doc for doc in objects(values) if doc["kind"] == "Secret"]

    (generated,) = secrets({})
    assert len(base64.b64decode(generated["data"]["redis-password"])) == 32
    (given,) = secrets({"auth": {"password": "s3cretpassword"}})
    assert base64.b64decode(given["data"]["redis-password"]) == b"s3cretpassword"
    assert secrets(VALUE_SETS["existing secret"]) == []
    assert secrets({"auth": {"enabled": False}}) == []


def test_redis_reads_its_password_from_the_secret_in_use():
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in redis_container()["env"]}
    assert env["REDIS_PASSWORD"] == {"name": REDIS_RELEASE, "key": "redis-password"}
    assert "$(REDIS_PASSWORD)" in redis_container()["args"]

    existing = redis_container(VALUE_SETS["existing secret"])
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in existing["env"]}
    assert env["REDIS_PASSWORD"] == {"name": "orders-redis-auth", "key": "password"}
    assert env["REDISCLI_AUTH"] == env["REDIS_PASSWORD"]


def test_without_auth_no_password_is_asked_for():
    container = redis_container({"auth": {"enabled": False}})
    assert "env" not in container
    assert "--requirepass" not in container["args"]


def test_redis_conf_evicts_ttl_keys_and_appends_every_second():
    conf = redis_conf()
    assert "maxmemory 128mb" in conf
    assert "maxmemory-policy volatile-lru" in conf
    assert "appendonly yes" in conf
    assert "appendfsync everysec" in conf
    assert "dir /data" in conf


def test_redis_is_started_with_the_mounted_redis_conf():
    container = redis_container()
    assert container["args"][0] == "/etc/redis/redis.conf"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"config": "/etc/redis", "data": "/data"}


def test_persistence_uses_a_volume_claim_template_and_an_empty_dir_when_off():
    assert statefulset()["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    off = statefulset({"persistence": {"enabled": False}})
    assert "volumeClaimTemplates" not in off["spec"]
    volumes = {v["name"]: v for v in off["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_storage_class_dash_means_no_dynamic_provisioning():
    def claim(values):
        return statefulset(values)["spec"]["volumeClaimTemplates"][0]["spec"]

    assert "storageClassName" not in claim({})
    assert claim({"persistence": {"storageClass": "-"}})["storageClassName"] == ""
    assert claim({"persistence": {"storageClass": "fast"}})["storageClassName"] == "fast"


def test_the_pod_is_ready_only_when_redis_answers_pong():
    probe = redis_container()["readinessProbe"]["exec"]["command"]
    assert "redis-cli" in probe[-1] and "PONG" in probe[-1]


def test_redis_runs_as_non_root():
    pod = statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert redis_container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_notes_tell_the_redis_url_for_the_function():
    notes = render_chart()["redis/templates/NOTES.txt"]
    assert f"redis://:<password>@{HOST}:6379/0" in notes
    assert f"kubectl get secret {REDIS_RELEASE} -n {NAMESPACE}" in notes
    notes_off = render_chart({"auth": {"enabled": False}})["redis/templates/NOTES.txt"]
    assert f"redis://{HOST}:6379/0" in notes_off


def test_values_yaml_names_the_bitnami_style_keys_users_expect():
    values = yaml.safe_load((REDIS_CHART / "values.yaml").read_text())
    assert set(values["auth"]) == {"enabled", "password", "existingSecret",
                                   "existingSecretPasswordKey"}
    assert {"enabled", "size", "storageClass"} <= set(values["persistence"])
    assert {"image", "resources", "maxmemory", "maxmemoryPolicy", "service"} <= set(values)


# --- Sentinel mode -------------------------------------------------------------------


def containers(values: dict | None = None) -> dict[str, Manifest]:
    return {c["name"]: c for c in statefulset(values)["spec"]["template"]["spec"]["containers"]}


def start_script(values: dict) -> str:
    return find(objects(values), "ConfigMap", REDIS_RELEASE)["data"]["start.sh"]


def test_the_default_stays_one_redis_pod_without_sentinels():
    assert statefulset()["spec"]["replicas"] == 1
    assert set(containers()) == {"redis"}
    service = find(objects(), "Service", REDIS_RELEASE)
    assert [port["name"] for port in service["spec"]["ports"]] == ["redis"]
    assert "start.sh" not in find(objects(), "ConfigMap", REDIS_RELEASE)["data"]


def test_sentinel_mode_runs_a_redis_and_a_sentinel_in_each_pod():
    assert statefulset(SENTINEL)["spec"]["replicas"] == 3
    pods = containers(SENTINEL)
    assert set(pods) == {"redis", "sentinel"}
    assert pods["redis"]["command"] == ["sh", "/etc/redis/start.sh", "redis"]
    assert pods["sentinel"]["command"] == ["sh", "/etc/redis/start.sh", "sentinel"]
    (sentinel_port,) = pods["sentinel"]["ports"]
    assert sentinel_port["containerPort"] == 26379
    mounts = {m["name"]: m["mountPath"] for m in pods["sentinel"]["volumeMounts"]}
    assert mounts["sentinel"] == "/sentinel"  # writable: a sentinel rewrites its config
    volumes = {v["name"]: v for v in statefulset(SENTINEL)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["sentinel"] == {"name": "sentinel", "emptyDir": {}}


def test_sentinels_and_replicas_reach_each_pod_by_name_even_before_it_is_ready():
    service = find(objects(SENTINEL), "Service", REDIS_RELEASE)
    assert service["spec"]["publishNotReadyAddresses"] is True
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    assert ports == {"redis": 6379, "sentinel": 26379}


def test_the_start_script_is_valid_shell_and_monitors_the_set_with_its_quorum():
    for values in (SENTINEL, VALUE_SETS["sentinel, auth off, five pods"]):
        script = start_script(values)
        checked = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr
    script = start_script(SENTINEL)
    assert 'sentinel monitor orders $primary 6379 2' in script
    assert "sentinel resolve-hostnames yes" in script and "sentinel announce-hostnames yes" in script
    assert "for n in $(seq 0 2)" in script  # asks every pod's sentinel
    assert '--replicaof "$primary" 6379' in script
    five = start_script(VALUE_SETS["sentinel, auth off, five pods"])
    assert "sentinel monitor orders $primary 6379 3" in five and "$(seq 0 4)" in five


def test_with_auth_the_replicas_and_sentinels_use_the_one_password_and_without_it_none():
    script = start_script(SENTINEL)
    assert '--masterauth "$REDIS_PASSWORD"' in script
    assert "sentinel auth-pass orders $REDIS_PASSWORD" in script
    assert "requirepass $REDIS_PASSWORD" in script
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in containers(SENTINEL)["sentinel"]["env"]}
    assert env["REDIS_PASSWORD"] == {"name": REDIS_RELEASE, "key": "redis-password"}
    off = start_script(VALUE_SETS["sentinel, auth off, five pods"])
    assert "REDIS_PASSWORD" not in off
    assert "env" not in containers(VALUE_SETS["sentinel, auth off, five pods"])["sentinel"]


def test_the_notes_give_the_sentinel_url_naming_every_pod():
    notes = render_chart(SENTINEL)["redis/templates/NOTES.txt"]
    hosts = ",".join(f"{REDIS_RELEASE}-{n}.{HOST}:26379" for n in range(3))
    assert f"redis+sentinel://:<password>@{hosts}/orders/0" in notes


def test_sentinel_values_out_of_range_are_rejected():
    import helm_python

    with pytest.raises(helm_python.HelmValuesError):
        render_chart({"architecture": "sentinel", "sentinel": {"replicas": 2}})
    with pytest.raises(helm_python.HelmValuesError):
        render_chart({"architecture": "replication"})
    with pytest.raises(helm_python.HelmRenderError, match="quorum"):
        render_chart({"architecture": "sentinel", "sentinel": {"replicas": 3, "quorum": 4}})


def test_the_chart_lints_clean_in_sentinel_mode():
    import helm_python

    report = helm_python.lint(str(REDIS_CHART), SENTINEL, strict=True, namespace=NAMESPACE,
                              kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


# --- the Sentinel-mode start script, run outside a pod -------------------------------
# `hostname`, `redis-cli` (the sentinels' answer) and `redis-server` are stand-ins on
# PATH, so the script's choices can be read; the configuration it writes is then loaded
# by a real redis-server.

POD_DOMAIN = f"{REDIS_RELEASE}.{NAMESPACE}.svc.cluster.local"


def run_start_script(tmp_path, values: dict, role: str, pod: int, sentinels_say: str | None) -> list[str]:
    """The arguments start.sh hands redis-server as pod `pod`, when the sentinels name
    `sentinels_say` as primary (None: no sentinel answers yet, a first install)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_ins = {
        "hostname": f"echo {REDIS_RELEASE}-{pod}",
        "redis-cli": f"echo {sentinels_say}" if sentinels_say else "exit 1",
        "redis-server": f'printf "%s\\n" "$@" > {tmp_path}/args',
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "start.sh"
    script.write_text(start_script(values))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": "s3cret", "SENTINEL_DIR": str(tmp_path)}
    subprocess.run(["sh", str(script), role], env=env, check=True, timeout=30)
    return (tmp_path / "args").read_text().splitlines()


def pod_name(n: int) -> str:
    return f"{REDIS_RELEASE}-{n}.{POD_DOMAIN}"


def test_on_a_first_install_pod_0_starts_as_primary_and_the_others_as_its_replicas(tmp_path):
    first = run_start_script(tmp_path, SENTINEL, "redis", pod=0, sentinels_say=None)
    assert "--replicaof" not in first
    assert first[:3] == ["/etc/redis/redis.conf", "--replica-announce-ip", pod_name(0)]
    second = run_start_script(tmp_path, SENTINEL, "redis", pod=1, sentinels_say=None)
    assert second[second.index("--replicaof") + 1:][:2] == [pod_name(0), "6379"]
    assert second[second.index("--masterauth") + 1] == "s3cret"
    # A real redis-server takes these arguments (with a local config file instead of
    # the ConfigMap's) and starts as a replica of pod 0.
    info = replication_info(tmp_path, second[1:])
    assert info["role"] == "slave" and info["master_host"] == pod_name(0)


def test_after_a_failover_a_restarted_pod_0_follows_the_primary_the_sentinels_name(tmp_path):
    args = run_start_script(tmp_path, SENTINEL, "redis", pod=0, sentinels_say=pod_name(2))
    assert args[args.index("--replicaof") + 1:][:2] == [pod_name(2), "6379"]
    # ... and the one the sentinels name as primary starts as primary.
    assert "--replicaof" not in run_start_script(tmp_path, SENTINEL, "redis", pod=2, sentinels_say=pod_name(2))


def replication_info(tmp_path, args: list[str]) -> dict:
    """INFO replication of a real redis-server started with `args` after a config file."""
    import redis

    from devserver.binaries import redis_server_binary
    from devserver.servers import free_port

    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsave \"\"\n")
    server = subprocess.Popen([str(redis_server_binary()), str(conf), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password="s3cret", socket_timeout=2)
        wait_until(lambda: answers(client.ping), what="redis-server", timeout_seconds=10,
                   still_running=lambda: server.poll() is None)
        return cast(dict[str, Any], client.info("replication"))
    finally:
        server.kill()
        server.wait()


def test_the_sentinel_configuration_the_script_writes_loads_in_a_real_sentinel(tmp_path):
    from devserver.binaries import redis_server_binary
    from devserver.servers import free_port

    # A primary the test can resolve and that does not exist: the sentinel only has to
    # accept its configuration, not find a Redis.
    ports = {"service": {"port": free_port()}, "sentinel": {"port": free_port()}}
    args = run_start_script(tmp_path, {**SENTINEL, **ports}, "sentinel", pod=1, sentinels_say="localhost")
    assert args == [f"{tmp_path}/sentinel.conf", "--sentinel"]
    conf = (tmp_path / "sentinel.conf").read_text()
    assert f"sentinel monitor orders localhost {ports['service']['port']} 2" in conf
    assert f"sentinel announce-ip {pod_name(1)}" in conf
    assert "sentinel auth-pass orders s3cret" in conf

    sentinel = subprocess.Popen([str(redis_server_binary()), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    try:
        import redis

        client = redis.Redis(port=ports["sentinel"]["port"], password="s3cret", socket_timeout=2)
        wait_until(lambda: answers(client.ping), what="the sentinel", timeout_seconds=10,
                   still_running=lambda: sentinel.poll() is None)
        assert client.sentinel_master("orders")["port"] == ports["service"]["port"]
    finally:
        sentinel.kill()
        sentinel.wait()


# --- cluster mode --------------------------------------------------------------------


def test_cluster_mode_runs_one_pod_per_node_started_together_with_the_bus_port_open():
    assert statefulset(CLUSTER)["spec"]["replicas"] == 6  # 3 primaries x (1 + 1 replica)
    assert statefulset(VALUE_SETS["cluster, auth off, four primaries without replicas"])["spec"]["replicas"] == 4
    assert statefulset(CLUSTER)["spec"]["podManagementPolicy"] == "Parallel"
    (container,) = statefulset(CLUSTER)["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "/etc/redis/start.sh", "redis"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"redis": 6379, "cluster-bus": 16379}
    service = find(objects(CLUSTER), "Service", REDIS_RELEASE)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"redis": 6379, "cluster-bus": 16379}
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_cluster_mode_keeps_each_nodes_identity_on_its_volume_and_tells_clients_dns_names():
    conf = redis_conf(CLUSTER)
    assert "cluster-enabled yes" in conf and "cluster-config-file /data/nodes.conf" in conf
    assert "cluster-node-timeout 5000" in conf and "cluster-port 16379" in conf
    assert "cluster-preferred-endpoint-type hostname" in conf
    assert not any(line.startswith("cluster-") for line in redis_conf())  # standalone unchanged


def test_the_cluster_is_created_once_by_a_post_install_job_over_every_pod():
    job = find(objects(CLUSTER), "Job", f"{REDIS_RELEASE}-create-cluster")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "/etc/redis/create-cluster.sh"]
    assert container["env"][0]["name"] == "REDISCLI_AUTH"
    script = find(objects(CLUSTER), "ConfigMap", REDIS_RELEASE)["data"]["create-cluster.sh"]
    assert "for n in $(seq 0 5)" in script and "--cluster-replicas 1 --cluster-yes" in script
    assert "cluster_known_nodes:1" in script  # a cluster that exists is left alone
    assert not [doc for doc in objects() if doc["kind"] == "Job"]


def test_the_notes_give_the_cluster_url_naming_every_pod_as_a_seed():
    notes = render_chart(CLUSTER)["redis/templates/NOTES.txt"]
    hosts = ",".join(f"{REDIS_RELEASE}-{n}.{HOST}:6379" for n in range(6))
    assert f"redis+cluster://:<password>@{hosts}" in notes
    from function.targets import parse_redis_url

    seeds = parse_redis_url(f"redis+cluster://:pw@{hosts}").cluster
    assert seeds is not None and len(seeds.addresses) == 6


def test_cluster_values_out_of_range_or_without_a_volume_are_rejected():
    import helm_python

    with pytest.raises(helm_python.HelmValuesError):
        render_chart({"architecture": "cluster", "cluster": {"primaries": 2}})
    with pytest.raises(helm_python.HelmRenderError, match="nodes.conf"):
        render_chart({"architecture": "cluster", "persistence": {"enabled": False}})


def test_the_cluster_scripts_are_valid_shell():
    for values in (CLUSTER, VALUE_SETS["cluster, auth off, four primaries without replicas"]):
        data = find(objects(values), "ConfigMap", REDIS_RELEASE)["data"]
        for name in ("start.sh", "create-cluster.sh"):
            checked = subprocess.run(["sh", "-n"], input=data[name], text=True, capture_output=True, check=False)
            assert checked.returncode == 0, (name, checked.stderr)


def test_the_chart_lints_clean_in_cluster_mode():
    import helm_python

    report = helm_python.lint(str(REDIS_CHART), CLUSTER, strict=True, namespace=NAMESPACE,
                              kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def test_a_restarted_cluster_pod_looks_up_every_nodes_address_again_by_its_name(tmp_path):
    # nodes.conf as Redis 7 writes it with announced hostnames: the IPs are last start's.
    (tmp_path / "nodes.conf").write_text(
        f"aaa 10.0.0.1:6379@16379,{pod_name(0)} myself,master - 0 0 1 connected 0-5460\n"
        f"bbb 10.0.0.2:6379@16379,{pod_name(1)},shard-id=x master - 0 0 2 connected 5461-10922\n"
        "ccc 10.0.0.3:6379@16379 master - 0 0 3 connected 10923-16383\n"
        "vars currentEpoch 3 lastVoteEpoch 0\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {
        "hostname": f"echo {REDIS_RELEASE}-0",
        # The cluster's DNS: pod 0 and 1 have new IPs; an unknown name resolves to nothing.
        "getent": f'case "$2" in {pod_name(0)}) echo "10.1.0.7 x";; {pod_name(1)}) echo "10.1.0.8 y";; *) exit 2;; esac',
        "redis-server": f'printf "%s\\n" "$@" > {tmp_path}/args',
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "start.sh").write_text(start_script(CLUSTER))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": "s3cret", "DATA_DIR": str(tmp_path)}
    subprocess.run(["sh", str(tmp_path / "start.sh"), "redis"], env=env, check=True, timeout=30)

    lines = (tmp_path / "nodes.conf").read_text().splitlines()
    assert lines[0].startswith(f"aaa 10.1.0.7:6379@16379,{pod_name(0)} myself,master")
    assert lines[1].startswith(f"bbb 10.1.0.8:6379@16379,{pod_name(1)},shard-id=x master")
    assert lines[2].startswith("ccc 10.0.0.3:6379@16379 master")  # no name announced: kept
    assert lines[3] == "vars currentEpoch 3 lastVoteEpoch 0"
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:3] == ["/etc/redis/redis.conf", "--cluster-announce-hostname", pod_name(0)]
    assert args[args.index("--masterauth") + 1] == "s3cret"


def test_the_cluster_redis_conf_and_start_arguments_load_in_a_real_redis_server(tmp_path):
    """The rendered cluster lines (the volume's path swapped for a temp dir) with the
    arguments start.sh passes: a real redis-server starts as a cluster node on the
    chart's bus port, announcing its pod's name."""
    import redis

    from devserver.binaries import redis_server_binary
    from devserver.servers import free_port

    port, bus = free_port(), free_port()
    values = {**CLUSTER, "service": {"port": port}, "cluster": {"busPort": bus}}
    cluster_lines = [line.replace("/data/", f"{tmp_path}/") for line in redis_conf(values) if line.startswith("cluster-")]
    (tmp_path / "redis.conf").write_text(
        "\n".join([f"port {port}", "bind 127.0.0.1", f"dir {tmp_path}", 'save ""', *cluster_lines]) + "\n")
    server = subprocess.Popen(
        [str(redis_server_binary()), str(tmp_path / "redis.conf"), "--cluster-announce-hostname", pod_name(0),
         "--requirepass", "s3cret", "--masterauth", "s3cret"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password="s3cret", socket_timeout=2)
        wait_until(lambda: answers(client.ping), what="redis-server", timeout_seconds=10,
                   still_running=lambda: server.poll() is None)
        info = client.execute_command("CLUSTER", "INFO").decode()
        assert cast(dict[str, Any], client.info("cluster"))["cluster_enabled"] == 1
        assert "cluster_known_nodes:1" in info  # a lone node until the Job joins it
        assert cast(dict[str, Any], client.config_get("cluster-port"))["cluster-port"] == str(bus)
        assert (tmp_path / "nodes.conf").exists()
    finally:
        server.kill()
        server.wait()
