"""POSTing one order event to K_SINK, and what a failed attempt was.

httpx is the client: asyncio-native (no thread per POST, unlike the stdlib's), with a
connection pool kept alive to the sink and one overall timeout per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpx

from .order_events import created_event_headers
from .orders import Order
from .outcomes import PublishFailure

# Connections kept to the sink: a sweep's batch and the publishes right after commits
# share them; more POSTs at once wait for one (inside their timeout).
MAX_CONNECTIONS = 16


class Publisher:
    """One per worker process, on its event loop (an httpx client belongs to one loop)."""

    def __init__(self, sink: str, extensions: Iterable[tuple[str, str]], timeout_seconds: float) -> None:
        self._sink = sink
        self._extensions = tuple(extensions)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
            trust_env=False,  # K_SINK is the address; no proxy variable reroutes events
        )
        self._timeout_seconds = timeout_seconds

    def headers(self, order: Order) -> dict[str, str]:
        return created_event_headers(order.order_id, order.created_at, self._extensions)

    async def post(self, order: Order, extra_headers: dict[str, str] | None = None) -> PublishFailure | None:
        """The event of `order` sent once: None when the sink answered 2xx."""
        headers = self.headers(order)
        if extra_headers:
            headers.update(extra_headers)
        try:
            # The pool wait, connect, send and read together stay within one bound (httpx's
            # own timeouts are per phase): the outbox's lease on the row assumes it.
            async with asyncio.timeout(self._timeout_seconds):
                response = await self._client.post(self._sink, content=order.body(), headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return PublishFailure.TIMEOUT
        except httpx.TransportError:
            return PublishFailure.CONNECTION
        if 200 <= response.status_code < 300:
            return None
        return PublishFailure.REJECTED if 400 <= response.status_code < 500 else PublishFailure.SINK_ERROR

    async def close(self) -> None:
        await self._client.aclose()
