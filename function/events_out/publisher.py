"""POSTing one order event to K_SINK, and what a failed attempt was.

aiohttp is the client: asyncio-native (no thread per POST), a kept-alive connection
pool to the sink, and a C HTTP parser. It costs the loop that answers orders several
times less CPU per POST than httpx, whose pool checks every idle connection's socket on
each request (figures: docs/events-out.md, "What it costs").
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import aiohttp

from ..created_event import created_event_headers
from ..labels import PublishFailure
from ..orders import Order
from ..targets import Keepalive

# Connections kept to the sink: a sweep's batch and the publishes right after commits
# share them; more POSTs at once wait for one (inside their timeout).
MAX_CONNECTIONS = 16


class Publisher:
    """One per worker process; its session is made on first use, on the loop that uses
    it (an aiohttp session belongs to one loop)."""

    def __init__(
        self, sink: str, extensions: Iterable[tuple[str, str]], timeout_seconds: float,
        keepalive: Keepalive | None = Keepalive(),
    ) -> None:
        self._sink = sink
        self._keepalive = keepalive
        self._extensions = tuple(extensions)
        self._timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, socket_factory=self._socket),
                cookie_jar=aiohttp.DummyCookieJar(),  # a sink's cookies mean nothing to us
                trust_env=False,  # K_SINK is the address; no proxy variable reroutes events
            )
        return self._session

    def _socket(self, address: Any) -> socket.socket:
        """A kept-alive connection to a sink that vanished without a reset is found dead
        by TCP keepalive, not by the POST that next waits on it."""
        family, kind, protocol = address[0], address[1], address[2]
        sock = socket.socket(family, kind, protocol)
        if self._keepalive is not None:
            self._keepalive.apply(sock)
        return sock

    async def post(self, order: Order, extra_headers: dict[str, str] | None = None) -> PublishFailure | None:
        """The event of `order` sent once: None when the sink answered 2xx."""
        headers = created_event_headers(order.order_id, order.created_at, self._extensions)
        if extra_headers:
            headers.update(extra_headers)
        try:
            # The wait for a connection, connect, send and read together stay within one
            # bound: the outbox's lease on the row assumes it.
            async with asyncio.timeout(self._timeout_seconds):
                async with self._client().post(self._sink, data=order.body(), headers=headers) as response:
                    status = response.status
                    await response.read()  # the whole answer, so the connection is reused
        except TimeoutError:
            return PublishFailure.TIMEOUT
        except aiohttp.ClientError:  # refused, reset, unresolvable, a broken answer
            return PublishFailure.CONNECTION
        if 200 <= status < 300:
            return None
        return PublishFailure.REJECTED if 400 <= status < 500 else PublishFailure.SINK_ERROR

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
