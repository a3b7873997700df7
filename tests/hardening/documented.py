"""The OpenAPI document as the tests read it, and the check that an answer is documented."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "function" / "openapi.json"
# Status, media type, headers and body: what "the document says this answer" means.
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def load_document() -> dict[str, Any]:
    return json.loads(DOCUMENT_PATH.read_text())


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) for every operation the document lists."""
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def documented_statuses(document: dict[str, Any]) -> dict[tuple[str, str], set[int]]:
    return {
        (method.upper(), path): {int(status) for status in item[method]["responses"]}
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def path_parameters(template: str, path_url: str) -> dict[str, str]:
    """The values a request's path gave the template's {parameters}."""
    pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
    match = re.fullmatch(pattern, urlsplit(path_url).path)
    assert match is not None, f"{path_url} is not {template}"
    return {name: unquote(value) for name, value in match.groupdict().items()}


class AnswerLog:
    """Checks each real answer against the document and remembers which statuses it saw."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._schema = schemathesis.openapi.from_dict(document)
        self.seen: dict[tuple[str, str], set[int]] = defaultdict(set)

    def check(self, method: str, path: str, response: requests.Response) -> requests.Response:
        operation = self._schema[path][method]
        request = response.request  # requests' (a copy's answer) or httpx's (the in-process app's)
        sent = request.path_url if isinstance(response, requests.Response) else request.url.raw_path.decode()
        case = operation.Case(path_parameters=path_parameters(path, sent))
        case.validate_response(response, checks=CONFORMANCE)
        self.seen[(method.upper(), path)].add(response.status_code)
        return response
