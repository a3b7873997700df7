"""Loading and checking the deployment files offline: no cluster, no helm or docker binary.

Core kinds are checked against Kubernetes' own JSON schemas (kubernetes-validate,
strict: unknown fields are errors). Knative kinds have no schema there, so they go
through the pydantic models of Knative's CRDs (cloudcoil), which ignore unknown
fields: `unknown_fields` finds those by comparing the input with the model's dump.
"""

from __future__ import annotations

import configparser
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
KNATIVE = REPO / "knative"
REDIS_CHART = REPO / "redis-chart"
POSTGRES_K8S = REPO / "postgres" / "k8s"

# minikube's Kubernetes in docs/deploying.md; Knative 1.17 supports it.
KUBERNETES_VERSION = "1.30.0"

# The release and namespace docs/deploying.md installs the chart as.
REDIS_RELEASE = "orders-redis"
NAMESPACE = "orders"

Manifest = dict[str, Any]


def load_documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def load_directory(directory: Path) -> dict[str, list[Manifest]]:
    """{file name: documents} for every .yaml file of a directory."""
    return {path.name: load_documents(path) for path in sorted(directory.glob("*.yaml"))}


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pgbouncer_ini() -> configparser.ConfigParser:
    """postgres/k8s/pgbouncer.yaml's pgbouncer.ini, parsed as PgBouncer reads it
    (`;` comments, `key = value`, an empty value allowed)."""
    config_map = find(load_documents(POSTGRES_K8S / "pgbouncer.yaml"), "ConfigMap", "pgbouncer")
    parser = configparser.ConfigParser(comment_prefixes=(";", "#"), interpolation=None)
    parser.read_string(config_map["data"]["pgbouncer.ini"])
    return parser


def is_knative(manifest: Manifest) -> bool:
    return manifest["apiVersion"].split("/")[0].endswith(".knative.dev")


def validate_core(manifest: Manifest) -> None:
    """Raise unless the object matches Kubernetes' schema, unknown fields included."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@lru_cache(maxsize=None)
def knative_models() -> dict[tuple[str, str], Any]:
    # The generated eventing models warn about field names shadowing pydantic's; that
    # is the library's business, not a finding about our files.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cloudcoil.models.knative_eventing.eventing.v1 import Broker, Trigger
        from cloudcoil.models.knative_eventing.sources.v1 import PingSource, SinkBinding
        from cloudcoil.models.knative_serving.serving.v1 import Service
    return {
        ("serving.knative.dev/v1", "Service"): Service,
        ("eventing.knative.dev/v1", "Broker"): Broker,
        ("eventing.knative.dev/v1", "Trigger"): Trigger,
        ("sources.knative.dev/v1", "PingSource"): PingSource,
        ("sources.knative.dev/v1", "SinkBinding"): SinkBinding,
    }


def validate_knative(manifest: Manifest) -> dict[str, Any]:
    """Validate with the Knative 1.17 CRD model; return the model's dump."""
    model = knative_models()[(manifest["apiVersion"], manifest["kind"])]
    parsed = model.model_validate(manifest)
    return parsed.model_dump(by_alias=True, exclude_unset=True)


def unknown_fields(given: Any, dumped: Any, path: str = "") -> Iterator[str]:
    """Paths present in `given` but missing from `dumped`: fields the model dropped."""
    if isinstance(given, dict):
        for key, value in given.items():
            here = f"{path}.{key}"
            if not isinstance(dumped, dict) or key not in dumped:
                yield here
            else:
                yield from unknown_fields(value, dumped[key], here)
    elif isinstance(given, list):
        for index, item in enumerate(given):
            here = f"{path}[{index}]"
            if not isinstance(dumped, list) or index >= len(dumped):
                yield here
            else:
                yield from unknown_fields(item, dumped[index], here)


def render_chart(values: dict[str, Any] | None = None) -> dict[str, str]:
    """{template path: rendered text} of redis-chart, as `helm template` would give."""
    import helm_python

    chart = helm_python.Chart.load(str(REDIS_CHART))
    return chart.render(values or {}, name=REDIS_RELEASE, namespace=NAMESPACE)


def rendered_manifests(rendered: dict[str, str]) -> list[Manifest]:
    """The Kubernetes objects of a render (NOTES.txt and empty templates left out)."""
    manifests: list[Manifest] = []
    for template, text in rendered.items():
        if template.endswith(".yaml"):
            manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests
