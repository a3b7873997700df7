"""The floor: a bare functions-framework function that answers a constant.

Served exactly as the orders function is (the Procfile's command, same WORKERS and
THREADS), so what it costs is what functions-framework, gunicorn and Flask cost; every
figure of the function is reported as a ratio to this one, measured in the same run.
"""

from __future__ import annotations

import flask

ANSWER = b'{"orderId":"00000000-0000-0000-0000-000000000000"}'


def handle(request: flask.Request) -> flask.Response:
    return flask.Response(ANSWER, 201, content_type="application/json")
