"""Entry point: functions-framework (`--asgi`) awaits `handle` for every request, on every path.

It routes, runs one route, and turns every failure into a problem+json answer; the log
line and the metrics for the request are written here and nowhere else. Storage errors
become problems here too, once.
"""

from __future__ import annotations

import os
import time
from typing import Awaitable, Callable

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from . import events, framework, logs, metrics, routes, routing, service, startup
from .database import DatabaseUnavailable
from .problems import InternalError, Problem, StoreUnavailable

SETTINGS = startup.settings_or_exit(dict(os.environ))
logs.configure(SETTINGS.log_level)
startup.apply_schema(SETTINGS)
framework.answer_framework_errors_as_problems()

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


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    started = time.perf_counter()
    notes = routes.Notes()
    try:
        endpoint, order_id = routing.match(request.method, request.scope["path"])
        notes.route = endpoint
        if endpoint == "create" and events.is_cloudevent(request):
            endpoint = notes.route = "event"
        running = service.for_this_process(SETTINGS)
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
    _account(request.method, response.status_code, notes, time.perf_counter() - started)
    return response


def _problem_response(problem: Problem, notes: routes.Notes) -> Response:
    if problem.outcome is not None:
        notes.outcome = problem.outcome
    body, status, headers = problem.render()
    return Response(body, status, headers=headers)


def _account(method: str, status: int, notes: routes.Notes, seconds: float) -> None:
    metrics.observe_request(notes.route, method, status, seconds, notes.outcome, notes.degraded)
    logs.request_line({
        "route": notes.route, "method": method, "status": status, "profile": notes.profile,
        "keyHash": notes.key_hash, "outcome": notes.outcome.value if notes.outcome else None,
        "degraded": notes.degraded or None, "durationMs": round(seconds * 1000, 2),
    })
