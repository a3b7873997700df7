"""The request path: functions-framework (`--asgi`) awaits `handle` for every request,
on every path (main.py hands it over, startup.py builds it).

It routes, runs one route, and turns every failure into a problem+json answer; the log
line, the metrics and the server span for the request are made here and nowhere else.
Storage errors become problems here too, once.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from . import events_in, framework_patch, http_in, logs, metrics, worker
from .database import DatabaseUnavailable
from .problems import InternalError, Problem, StoreUnavailable
from .request import Notes, head_of, route_of
from .route_table import Endpoint
from .settings import Settings
from .tracing import UNTRACED_PATHS, Tracing

Handler = Callable[..., Awaitable[Response]]
HANDLERS: dict[Endpoint, Handler] = {
    Endpoint.CREATE: http_in.create_order,
    Endpoint.LIST: http_in.list_orders,
    Endpoint.GET: http_in.get_order,
    Endpoint.HEALTH: http_in.health,
    Endpoint.METRICS: http_in.prometheus,
    Endpoint.OPENAPI: http_in.openapi,
    Endpoint.EVENT: events_in.handle,
}


def serving(settings: Settings, *, schema_applied: bool) -> Callable[[Request], object]:
    """`handle`, for a copy with these settings (`schema_applied`: start-up applied it)."""

    @functions_framework.aio.http
    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        running = worker.for_this_process(settings, schema_applied=schema_applied)
        if running.tracing is not None and request.scope["path"] not in UNTRACED_PATHS:
            return await _traced(request, running, running.tracing, started)
        notes = Notes()
        response = await _answer(request, running, notes)
        _account(request.method, response.status_code, notes, time.perf_counter() - started)
        return response

    return handle


async def _traced(request: Request, running: worker.Service, tracing: Tracing, started: float) -> Response:
    """`handle` inside the request's server span, under the caller's trace context."""
    notes = Notes()
    head = head_of(request)
    carrier, early = None, None
    if "traceparent" not in head and _is_event(request):
        try:
            carrier, request = await events_in.trace_carrier(request)
        except Problem as problem:  # the body could not be read: answered in the span
            early, notes.route = problem, Endpoint.EVENT
    with tracing.server_span(request, head, carrier) as span:
        if early is None:
            response = await _answer(request, running, notes)
        else:
            response = _problem_response(early, notes)
            response.headers["x-served-by"] = framework_patch.copy_name()
        tracing.answered(span, response, notes)
        _account(request.method, response.status_code, notes, time.perf_counter() - started, tracing.ids(span))
    return response


async def _answer(request: Request, running: worker.Service, notes: Notes) -> Response:
    try:
        endpoint, order_id = route_of(request)
        notes.route = endpoint
        if order_id is None:
            response = await HANDLERS[endpoint](request, running, notes)
        else:
            response = await HANDLERS[endpoint](request, running, notes, order_id)
    except Problem as problem:
        response = _problem_response(problem, notes)
    except DatabaseUnavailable as unavailable:
        response = _problem_response(StoreUnavailable(unavailable.detail), notes)
    except Exception:
        logs.error("unhandled error", route=notes.route)
        response = _problem_response(InternalError("the function failed; it has been logged"), notes)
    response.headers["x-served-by"] = framework_patch.copy_name()
    return response


def _is_event(request: Request) -> bool:
    try:
        return route_of(request)[0] is Endpoint.EVENT
    except Problem:  # no route: answered as such in the span
        return False


def _problem_response(problem: Problem, notes: Notes) -> Response:
    if problem.outcome is not None:
        notes.outcome = problem.outcome
    body, status, headers = problem.render()
    return Response(body, status, headers=headers)


def _account(
    method: str, status: int, notes: Notes, seconds: float, trace: tuple[str, str] | None = None,
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
