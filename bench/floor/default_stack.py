"""The default-stack floor: a bare functions-framework function answering a constant 201,
served by gunicorn's gthread worker and Flask (`functions-framework` without `--asgi`).

What functions-framework's default stack costs per request, for scale; the function's
figures are judged against the ASGI floor (asgi_stack.py), the stack it runs on.
"""

from __future__ import annotations

import flask

ANSWER = b'{"orderId":"00000000-0000-0000-0000-000000000000"}'


def handle(request: flask.Request) -> flask.Response:
    return flask.Response(ANSWER, 201, content_type="application/json")
