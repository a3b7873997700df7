"""`python -m demo --watch-pods`: the parsing of the Knative Service's pods, on stored API
objects (tests/recorded/). No cluster runs here, so the Kubernetes API itself is not called."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from demo.pods import PodHistory, label_selector, parse_target, pod_state

RECORDED = Path(__file__).parent / "recorded" / "knative_pods.json"


def snapshots() -> list[tuple[float, list[dict[str, Any]]]]:
    return [(entry["seconds"], entry["podList"]["items"]) for entry in json.loads(RECORDED.read_text())]


def test_a_pod_is_starting_until_ready_and_draining_once_it_has_a_deletion_timestamp() -> None:
    stages = [[pod_state(pod).stage for pod in pods] for _, pods in snapshots()]

    assert stages[1] == ["starting"]
    assert stages[2] == ["ready"]
    assert stages[3] == ["ready", "starting", "starting"]
    assert stages[5] == ["draining", "ready", "ready"]


def test_the_history_counts_cold_starts_drains_and_the_peak_as_the_demo_table_shows_them() -> None:
    history = PodHistory()
    for seconds, pods in snapshots():
        history.record(seconds, pods)

    assert history.figures()["peakCopies"] == 3
    assert history.figures()["coldStarts"] == 3
    assert history.figures()["drains"] == 3
    assert [(e.kind, e.seconds) for e in history.events if e.copy.endswith("abcde")] == [
        ("cold start", 0.5), ("ready", 2.0), ("drain", 9.0), ("exit", 10.0)]
    timeline = history.timeline()
    assert [(s.starting, s.ready, s.draining) for s in timeline.samples][-3:] == [(0, 2, 0), (0, 0, 2), (0, 0, 0)]


def test_pods_already_running_when_the_watch_begins_are_not_cold_starts() -> None:
    history = PodHistory()
    for seconds, pods in snapshots()[4:]:
        history.record(seconds, pods)

    assert history.figures()["coldStarts"] == 0
    assert history.figures()["drains"] == 3


def test_the_client_models_read_the_stored_objects_back_as_the_watcher_sees_them() -> None:
    client = pytest.importorskip("kubernetes.client", reason="pip install -r demo/requirements.txt")
    api = client.ApiClient()

    class Stored:  # what ApiClient.deserialize reads: an HTTP answer's body
        data = json.dumps(json.loads(RECORDED.read_text())[5]["podList"])

    pod_list = api.deserialize(Stored(), "V1PodList")
    pods = [api.sanitize_for_serialization(pod) for pod in pod_list.items]

    assert [pod_state(pod).stage for pod in pods] == ["draining", "ready", "ready"]
    assert pod_state(pods[0]).revision == "orders-00001"


def test_the_watch_target_is_namespace_slash_service_and_selects_by_the_knative_label() -> None:
    assert parse_target("orders/orders") == ("orders", "orders")
    assert label_selector("orders") == "serving.knative.dev/service=orders"
    with pytest.raises(ValueError, match="NAMESPACE/SERVICE"):
        parse_target("orders")


def test_the_pods_timeline_is_drawn_without_a_per_copy_panel_it_has_no_data_for(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="pip install -r demo/requirements.txt")
    from demo.plot import draw
    from loadgen.storm import Attempt, Planned, Result, Run

    history = PodHistory()
    for seconds, pods in snapshots():
        history.record(seconds, pods)
    results = [Result(Planned(k, 0, "", False, None), [Attempt(201, 0.01)], order_id=f"o{k}",
                      sent_at=k * 0.5, answered_at=k * 0.5 + 0.01) for k in range(40)]
    figures = {"duplicatesCreated": 0, "answersCarryingAnotherOrder": 0, "distinctKeys": 40,
               "ordersAfterwards": 40, **history.figures()}
    plot = tmp_path / "pods.png"

    draw(Run("demo-x", [f"k{k}" for k in range(40)], results, 20.0), figures, plot, history.timeline())

    assert plot.stat().st_size > 10_000
