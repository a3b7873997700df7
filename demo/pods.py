"""`--watch-pods NAMESPACE/SERVICE`: the Knative Service's real pods over time, read through
the Kubernetes API with the official `kubernetes` client (in-cluster, else kubeconfig),
drawn in the same timeline as the local autoscaler's copies.

The pods are listed every POLL_SECONDS (a list is simpler to reason about than a watch
stream that may drop); each snapshot is reduced to plain `PodState`s by `pod_state`,
which reads the API's JSON shape (what `kubectl get pods -o json` prints), so its tests
run on stored API objects without a cluster.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .autoscaler import Event, Sample
from .timeline import Timeline

POLL_SECONDS = 0.5
SERVICE_LABEL = "serving.knative.dev/service"  # Knative puts it on every pod of the Service
KNATIVE_TARGET_ANNOTATION = "autoscaling.knative.dev/target"


@dataclass(frozen=True)
class PodState:
    name: str
    created: datetime | None
    ready: bool  # the pod's Ready condition: queue-proxy and the function both pass their probes
    ready_since: datetime | None
    terminating: bool  # deletionTimestamp set: Knative scaled it down; SIGTERM is on its way or sent
    revision: str

    @property
    def stage(self) -> str:
        if self.terminating:
            return "draining"
        return "ready" if self.ready else "starting"


def pod_state(pod: dict[str, Any]) -> PodState:
    """One pod in the API's JSON shape (camelCase keys) as the timeline needs it."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return PodState(
        name=metadata.get("name", "?"),
        created=_time(metadata.get("creationTimestamp")),
        ready=ready.get("status") == "True",
        ready_since=_time(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None,
        terminating=metadata.get("deletionTimestamp") is not None,
        revision=(metadata.get("labels") or {}).get("serving.knative.dev/revision", "?"),
    )


def label_selector(service: str) -> str:
    return f"{SERVICE_LABEL}={service}"


def parse_target(value: str) -> tuple[str, str]:
    namespace, slash, service = value.partition("/")
    if not slash or not namespace or not service:
        raise ValueError(f"--watch-pods wants NAMESPACE/SERVICE (e.g. orders/orders), not {value!r}")
    return namespace, service


class PodHistory:
    """Snapshots of the Service's pods, turned into the timeline's samples and events."""

    def __init__(self, target: float = 0.0) -> None:
        self.target = target
        self.samples: list[Sample] = []
        self.events: list[Event] = []
        self._last: dict[str, PodState] = {}

    def record(self, seconds: float, pods: list[dict[str, Any]]) -> None:
        states = {state.name: state for state in map(pod_state, pods)}
        baseline = not self.samples  # pods already there when the watch began started before it
        for name, state in states.items():
            before = self._last.get(name)
            if before is None:
                self.events.append(Event(seconds, "present" if baseline else "cold start", name, state.revision))
            if state.ready and not (before and before.ready) and not state.terminating:
                self.events.append(Event(seconds, "ready", name))
            if state.terminating and not (before and before.terminating):
                self.events.append(Event(seconds, "drain", name))
        for name in set(self._last) - set(states):
            self.events.append(Event(seconds, "exit", name))
        stages = Counter(state.stage for state in states.values())
        self.samples.append(Sample(seconds, stages["starting"], stages["ready"], stages["draining"], 0, 0,
                                   {name: 0 for name in states}))
        self._last = states

    def figures(self) -> dict[str, Any]:
        return {
            "peakCopies": max((s.starting + s.ready for s in self.samples), default=0),
            "coldStarts": sum(1 for e in self.events if e.kind == "cold start"),
            "drains": sum(1 for e in self.events if e.kind == "drain"),
            "podsSeen": len({e.copy for e in self.events}),
            "copiesFrom": "Kubernetes API (pods of the Knative Service)",
        }

    def timeline(self, wave_started_at: tuple[float, ...] = ()) -> Timeline:
        return Timeline(self.samples, self.events, self.target, wave_started_at, knows_in_flight=False,
                        source="the Knative Service's pods, from the Kubernetes API")


class PodWatcher:
    """Polls the pods in a thread while the demo fires; needs a reachable cluster."""

    def __init__(self, namespace: str, service: str) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self._api = client.CoreV1Api()
        self._serialize = client.ApiClient().sanitize_for_serialization
        self.namespace, self.service = namespace, service
        self.history = PodHistory()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._started = time.perf_counter()

    @classmethod
    def for_service(cls, value: str) -> PodWatcher:
        return cls(*parse_target(value))

    def start(self) -> PodWatcher:
        self._started = time.perf_counter()
        self._snapshot()  # before the first request: pods already there are not cold starts
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._snapshot()

    def timeline(self) -> Timeline:
        return self.history.timeline()

    def figures(self) -> dict[str, Any]:
        return self.history.figures()

    def _poll(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            self._snapshot()

    def _snapshot(self) -> None:
        listed = self._api.list_namespaced_pod(self.namespace, label_selector=label_selector(self.service))
        pods = [self._serialize(pod) for pod in listed.items]
        self.history.record(time.perf_counter() - self._started, pods)


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
