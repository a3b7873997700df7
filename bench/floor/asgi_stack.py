"""The ASGI floor: a bare `functions_framework.aio.http` function answering a constant 201,
served by `functions-framework --asgi` (gunicorn + uvicorn's worker, httptools and uvloop
when installed), the same command line as the orders function's with only the source
swapped. Every ratio the targets name is to this floor, measured in the same run.
"""

from __future__ import annotations

from functions_framework import aio
from starlette.requests import Request
from starlette.responses import Response

ANSWER = b'{"orderId":"00000000-0000-0000-0000-000000000000"}'


@aio.http
async def handle(request: Request) -> Response:
    return Response(ANSWER, 201, media_type="application/json")
