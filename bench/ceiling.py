"""The load generator's own ceiling: its throughput against a server that costs almost
nothing (a raw asyncio protocol answering a constant, in a process of its own).

If that ceiling is several times the floor's throughput, the generator is not what
bounds the figures; its CPU per request says what it takes from the 2 cores meanwhile.

`python -m bench.ceiling PORT` serves the constant (started by `start_constant_server`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import requests

from devserver.copies import PROJECT_ROOT
from devserver.servers import free_port

ANSWER = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _ConstantAnswers(asyncio.Protocol):
    """Answers every complete request on the connection with ANSWER, in order."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _content_length(self._buffer[:end])
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length:]
            assert self._transport is not None
            self._transport.write(ANSWER)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def _serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_ConstantAnswers, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def start_constant_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.ceiling", str(port)], cwd=PROJECT_ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(url, timeout=1)
            return process, url
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
