"""The settings the Knative Service runs with, read from knative/configmap.yaml, so the
bench serves its copies as deployed and the report says so."""

from __future__ import annotations

from typing import Any

import yaml

from devserver.copies import PROJECT_ROOT

CONFIGMAP = PROJECT_ROOT / "knative" / "configmap.yaml"


def knative_settings() -> dict[str, str]:
    """The `data:` entries of the ConfigMap the Service takes its environment from."""
    for document in yaml.safe_load_all(CONFIGMAP.read_text()):
        if isinstance(document, dict) and document.get("kind") == "ConfigMap":
            data: dict[str, Any] = document.get("data") or {}
            return {name: str(value) for name, value in data.items()}
    raise RuntimeError(f"{CONFIGMAP} holds no ConfigMap")


def bench_copy_settings() -> dict[str, str]:
    """The Knative settings, except the pooling mode: knative/ points at a transaction-mode
    PgBouncer, the bench's copies at PostgreSQL itself (the PgBouncer point sets its own)."""
    return {**knative_settings(), "DATABASE_POOLING": "direct"}
