"""Entry point: functions-framework (`--asgi`) awaits `handle` for every request, on every path.

It routes, runs one route, and turns every failure into a problem+json answer; the log
line, the metrics and the server span for the request are made here and nowhere else.
Storage errors become problems here too, once.
"""

from __future__ import annotations

import os
import time
from typing import Awaitable, Callable

from . import startup

SETTINGS = startup.settings_or_exit(dict(os.environ))
# Before prometheus_client is imported (below, by metrics.py): it chooses then whether
# gunicorn's workers add up their values.
METRICS_DIRECTORY = startup.share_metrics_between_workers(SETTINGS)

import functions_framework.aio  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

from . import events, framework, logs, metrics, routes, routing, service  # noqa: E402
from .database import DatabaseUnavailable  # noqa: E402
from .problems import InternalError, Problem, StoreUnavailable  # noqa: E402
from .tracing import UNTRACED_PATHS, Tracing  # noqa: E402

metrics.share_between_workers(METRICS_DIRECTORY)
logs.configure(SETTINGS.log_level)
startup.apply_schema(SETTINGS)
framework.answer_framework_errors_as_problems()
framework.serve_with_our_server_settings()

Endpoint = Callable[..., Awaitable[Response]]
ENDPOINTS: dict[str, Endpoint] = {
    "create": routes.create_order,
    "list": routes.list_orders,
    "get": routes.get_order,
    "health": routes.health,
    "metrics": routes.prometheus,
    "openapi": routes.openapi,
    "event": events.handle,
}
EVENT_PATHS = frozenset({"/", "/orders", "/orders/"})  # where a POSTed CloudEvent is an order


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    started = time.perf_counter()
    running = service.for_this_process(SETTINGS)
    if running.tracing is not None and request.scope["path"] not in UNTRACED_PATHS:
        return await _traced(request, running, running.tracing, started)
    notes = routes.Notes()
    response = await _answer(request, running, notes)
    _account(request.method, response.status_code, notes, time.perf_counter() - started)
    return response


async def _traced(request: Request, running: service.Service, tracing: Tracing, started: float) -> Response:
    """`handle` inside the request's server span, under the caller's trace context."""
    notes = routes.Notes()
    head = routes.head_of(request)
    carrier, early = None, None
    if "traceparent" not in head and request.scope["path"] in EVENT_PATHS and events.is_cloudevent(request):
        try:
            carrier, request = await events.trace_carrier(request)
        except Problem as problem:  # the body could not be read: answered in the span
            early, notes.route = problem, "event"
    with tracing.server_span(request, head, carrier) as span:
        if early is None:
            response = await _answer(request, running, notes)
        else:
            response = _problem_response(early, notes)
            response.headers["x-served-by"] = framework.copy_name()
        tracing.answered(span, response, notes, events.identity(request))
        _account(request.method, response.status_code, notes, time.perf_counter() - started, tracing.ids(span))
    return response


async def _answer(request: Request, running: service.Service, notes: routes.Notes) -> Response:
    try:
        endpoint, order_id = routing.match(request.method, request.scope["path"])
        notes.route = endpoint
        if endpoint == "create" and events.is_cloudevent(request):
            endpoint = notes.route = "event"
        if order_id is None:
            response = await ENDPOINTS[endpoint](request, running, notes)
        else:
            response = await ENDPOINTS[endpoint](request, running, notes, order_id)
    except Problem as problem:
        response = _problem_response(problem, notes)
    except DatabaseUnavailable as unavailable:
        response = _problem_response(StoreUnavailable(unavailable.detail), notes)
    except Exception:
        logs.error("unhandled error", route=notes.route)
        response = _problem_response(InternalError("the function failed; it has been logged"), notes)
    response.headers["x-served-by"] = framework.copy_name()
    return response


def _problem_response(problem: Problem, notes: routes.Notes) -> Response:
    if problem.outcome is not None:
        notes.outcome = problem.outcome
    body, status, headers = problem.render()
    return Response(body, status, headers=headers)


def _account(
    method: str, status: int, notes: routes.Notes, seconds: float, trace: tuple[str, str] | None = None,
) -> None:
    metrics.observe_request(notes.route, method, status, seconds, notes.outcome, notes.degraded)
    line = {
        "route": notes.route, "method": method, "status": status, "profile": notes.profile,
        "keyHash": notes.key_hash, "outcome": notes.outcome.value if notes.outcome else None,
        "degraded": notes.degraded or None, "durationMs": round(seconds * 1000, 2),
    }
    if trace is not None:  # the server span's ids: a log search by trace id finds this line
        line["trace_id"], line["span_id"] = trace
    logs.request_line(line)
