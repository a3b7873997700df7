"""knative/observability: the alerts pass promtool and fire on the failures they name, and
the dashboard and alerts query only metrics the function really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support import Client

from .manifests import KNATIVE, find, load_documents, validate_core

OBSERVABILITY = KNATIVE / "observability"
RULES = OBSERVABILITY / "alerts.rules.yaml"
RULE_TESTS = OBSERVABILITY / "alerts.test.yaml"
PROMETHEUS_RULE = OBSERVABILITY / "prometheusrule.yaml"
DASHBOARD = OBSERVABILITY / "dashboard.json"

PROMTOOL_MISSING = "promtool not installed: apt-get update && apt-get install -y prometheus"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason=PROMTOOL_MISSING)

# Labels a metric may carry: none of them can hold a key, a profile or an order id.
ALLOWED_LABELS = {"route", "method", "status", "outcome", "kind", "ended"}


# --- what the files query ------------------------------------------------------------

def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


def alert_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


# PromQL words that are not metric names: functions, aggregations and keywords we use.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile",
    "by", "without", "on", "ignoring", "and", "or", "unless", "bool", "label_values",
    "avg_over_time", "max_over_time", "absent",
}


def metric_names(query: str) -> set[str]:
    """Every metric a PromQL query (or a Grafana label_values()) selects: what is left
    after strings, label matchers, grouping clauses, ranges and numbers are taken out."""
    text = re.sub(r'"[^"]*"', "", query)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    # label_values(metric, label): the second argument is a label, not a metric.
    words -= set(re.findall(r"label_values\([^,]*,\s*([A-Za-z_]+)\)", text))
    return words - PROMQL_WORDS


def test_the_name_extraction_finds_metrics_and_nothing_else() -> None:
    query = ('histogram_quantile(0.99, sum by (le, route) (rate(orders_x_bucket{route=~"a|b"}[5m])))'
             " / sum(orders_y_total) > 0.5")
    assert metric_names(query) == {"orders_x_bucket", "orders_y_total"}
    assert metric_names("label_values(orders_z_total{namespace=\"$n\"}, pod)") == {"orders_z_total"}


# --- what the function exports -------------------------------------------------------

def exposed_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition can produce, from its TYPE lines
    too, so a labelled counter nobody has incremented yet still counts as exported."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "summary":
                names |= {f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def defined_names() -> set[str]:
    """Every series name function/metrics.py defines (its module registry)."""
    from prometheus_client import generate_latest

    import function.metrics  # noqa: F401  (registers them)

    return {name for name in exposed_names(generate_latest().decode()) if name.startswith("orders_")}


def queried_names() -> set[str]:
    return set().union(*(metric_names(query) for query in dashboard_queries() + alert_queries()))


def test_every_metric_the_dashboard_and_alerts_query_is_defined_in_function_metrics() -> None:
    assert queried_names(), "no metric found in the queries: the extraction is broken"
    assert queried_names() - defined_names() == set()


def test_every_metric_they_query_is_served_by_a_running_copy_after_a_few_requests(api: Client) -> None:
    # A create, a replay, a mismatch, a health check: the counters they touch get series;
    # the others still have their HELP/TYPE lines.
    api.create(key="observed")
    api.create(key="observed")
    api.create({"productQuantity": 9}, key="observed")
    api.get("/healthz", profile=None)

    served = exposed_names(api.get("/metrics", profile=None).text)

    assert queried_names() - served == set()
    assert {"orders_idempotency_outcomes_total", "orders_request_duration_seconds_bucket"} <= served


def test_every_metric_follows_prometheus_naming_and_no_label_names_a_key_profile_or_order() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    import function.metrics

    defined = [m for m in vars(function.metrics).values() if isinstance(m, MetricWrapperBase)]
    assert defined
    for metric in defined:
        name, kind = metric._name, metric._type  # the client's own record of what was declared
        assert name.startswith("orders_") and not name.endswith("_total"), name  # the client adds _total
        if kind == "histogram":  # a time, or a count of creates (orders_insert_batch_creates)
            assert name.endswith(("_seconds", "_creates")), f"{name}: a histogram's unit is its suffix"
        assert set(metric._labelnames) <= ALLOWED_LABELS, f"{name} has labels {metric._labelnames}"


# --- the alerts ----------------------------------------------------------------------

@needs_promtool
def test_promtool_accepts_the_rules_file() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_the_alerts_fire_on_the_failures_they_name_and_not_on_a_healthy_copy() -> None:
    tested = subprocess.run(
        ["promtool", "test", "rules", RULE_TESTS.name], cwd=OBSERVABILITY, capture_output=True, text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(x[5m])\n")
    assert subprocess.run(["promtool", "check", "rules", str(broken)], capture_output=True).returncode != 0


def test_the_prometheus_rule_holds_exactly_the_groups_of_the_rules_file() -> None:
    rule = find(load_documents(PROMETHEUS_RULE), "PrometheusRule", "orders")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


# --- the scrape config and the dashboard ---------------------------------------------

def test_the_pod_monitor_scrapes_the_knative_services_user_port_metrics() -> None:
    service = find(load_documents(KNATIVE / "service.yaml"), "Service", "orders")
    monitor = find(load_documents(OBSERVABILITY / "podmonitor.yaml"), "PodMonitor", "orders")

    assert monitor["spec"]["selector"]["matchLabels"] == {"serving.knative.dev/service": service["metadata"]["name"]}
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    # Knative names the user container's port `user-port` in every revision's pods.
    assert (endpoint["port"], endpoint["path"]) == ("user-port", "/metrics")


def test_every_dashboard_panel_queries_the_selected_datasource_and_copies() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'pod=~"$pod"' in target["expr"], f"{panel['title']}: ignores the copy selector"


def test_the_dashboard_shows_every_signal_the_issue_asks_for() -> None:
    queries = " ".join(dashboard_queries())
    for status in ("409", "422", "503"):
        assert status in queries
    for metric in ("orders_degraded_operations_total", "orders_db_pool_connections_in_use",
                   "orders_db_pool_wait_seconds_bucket", "orders_redis_failures_total",
                   "orders_order_duration_seconds_bucket", "orders_waits_total"):
        assert metric in queries


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_the_observability_directory_with_the_dashboard_as_a_sidecar_configmap() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(OBSERVABILITY), "--server=http://127.0.0.1:9"],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "PodMonitor", "PrometheusRule"]
    configmap = find(objects, "ConfigMap", "orders-dashboard")
    validate_core(configmap)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["orders.json"]) == json.loads(DASHBOARD.read_text())
    assert {o["metadata"]["namespace"] for o in objects} == {"orders"}
