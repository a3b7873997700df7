"""Entry point: functions-framework calls `handle` for every request, on every path.

It routes, runs one route, and turns every failure into a problem+json answer; the log
line and the metrics for the request are written here and nowhere else.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Callable, Mapping

import flask
import functions_framework
from werkzeug.exceptions import MethodNotAllowed as RoutingMethodNotAllowed
from werkzeug.exceptions import NotFound as RoutingNotFound
from werkzeug.routing import Map, Rule

from . import events, logs, metrics, routes, service
from .problems import InternalError, MethodNotAllowed, NotFound, Problem
from .settings import ConfigError, Settings

try:
    SETTINGS = Settings.from_env(os.environ)
except ConfigError as exc:  # stop the start-up, naming the variable
    sys.exit(f"orders function: configuration error: {exc}")

logs.configure(SETTINGS.log_level)
HOSTNAME = socket.gethostname()  # with the pid, names the copy (and worker) that answered

ROUTES = Map(
    [
        Rule("/orders", methods=["POST"], endpoint="create"),
        Rule("/orders", methods=["GET"], endpoint="list"),
        Rule("/orders/<order_id>", methods=["GET"], endpoint="get"),
        Rule("/healthz", methods=["GET"], endpoint="health"),
        Rule("/metrics", methods=["GET"], endpoint="metrics"),
        Rule("/openapi.json", methods=["GET"], endpoint="openapi"),
        Rule("/", methods=["POST"], endpoint="event"),
    ],
    strict_slashes=False,
)
ROUTER = ROUTES.bind("")  # bound once: matching only reads it, so every thread may share it
ENDPOINTS: dict[str, Callable[..., flask.Response]] = {
    "create": routes.create_order,
    "list": routes.list_orders,
    "get": routes.get_order,
    "health": routes.health,
    "metrics": routes.prometheus,
    "openapi": routes.openapi,
    "event": events.handle,
}


def _framework_not_found(error: Exception) -> flask.Response:
    """A path functions-framework's own routes never pass to `handle` (one holding a
    newline; /robots.txt, /favicon.ico) gets the same problem+json 404 as any other."""
    response = _problem_response(NotFound("no such route"), routes.Trace())
    response.headers["X-Served-By"] = f"{HOSTNAME}/{os.getpid()}"
    return response


# functions-framework points `errorhandler` at its Flask app while it loads this module.
functions_framework.errorhandler(404)(_framework_not_found)


def handle(request: flask.Request) -> flask.Response:
    started = time.perf_counter()
    trace = routes.Trace()
    try:
        endpoint, arguments = _match(request)
        trace.route = endpoint
        if endpoint == "create" and events.is_cloudevent(request):
            endpoint = trace.route = "event"
        running = service.for_this_process(SETTINGS)
        response = ENDPOINTS[endpoint](request, running, trace, **arguments)
    except Problem as problem:
        response = _problem_response(problem, trace)
    except Exception:
        logs.error("unhandled error", route=trace.route)
        response = _problem_response(InternalError("the function failed; it has been logged"), trace)
    # The pid is read per request: this module is imported before gunicorn forks workers.
    response.headers["X-Served-By"] = f"{HOSTNAME}/{os.getpid()}"
    _account(request, response, trace, time.perf_counter() - started)
    return response


def _match(request: flask.Request) -> tuple[str, Mapping[str, Any]]:
    try:
        endpoint, arguments = ROUTER.match(request.path, method=request.method)
    except RoutingMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.valid_methods or []))
        raise MethodNotAllowed(f"this route allows {allowed}", headers={"Allow": allowed}) from None
    except RoutingNotFound:
        raise NotFound("no such route") from None
    return str(endpoint), arguments


def _problem_response(problem: Problem, trace: routes.Trace) -> flask.Response:
    trace.outcome = problem.outcome
    body, status, headers = problem.render()
    return flask.Response(body, status, headers=headers)


def _account(request: flask.Request, response: flask.Response, trace: routes.Trace, seconds: float) -> None:
    metrics.REQUESTS.labels(trace.route, request.method, str(response.status_code)).inc()
    metrics.LATENCY.labels(trace.route).observe(seconds)
    if trace.outcome is not None:
        metrics.OUTCOMES.labels(trace.outcome).inc()
        if trace.outcome == "created":
            metrics.ORDERS_CREATED.inc()
    if trace.degraded:
        metrics.DEGRADED.inc()
    logs.request_line(
        route=trace.route, method=request.method, status=response.status_code,
        profile=trace.profile, keyHash=trace.key_hash, outcome=trace.outcome,
        degraded=trace.degraded or None, durationMs=round(seconds * 1000, 2),
    )
