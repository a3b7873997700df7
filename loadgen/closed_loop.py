"""The load generator: closed-loop keep-alive HTTP/1.1 connections on asyncio streams, in
one process, one thread.

Each connection sends its next request as soon as the last answer is in (as wrk does),
so a figure is "this many connections, each always waiting on one request". Raw
streams rather than an HTTP library: on 2 cores every CPU microsecond the generator
spends is taken from the function it measures, so it parses only the status line and
the three headers it needs. Its own CPU time is measured with every run (an early run
found its ceiling at 30x the default-stack floor, and wrk agreed with it within 15%).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

NextRequest = Callable[[], "bytes | None"]  # the next request's bytes; None: no more


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    replayed: bool  # Idempotent-Replayed: true
    body: bytes


@dataclass(frozen=True)
class Measurement:
    connections: int
    answers: list[Answer]
    errors: list[str]
    wall_seconds: float
    generator_cpu_seconds: float  # this process's CPU while it ran

    @property
    def throughput(self) -> float:
        return len(self.answers) / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def latencies(self) -> list[float]:
        return [answer.seconds for answer in self.answers]


def request_bytes(method: str, url: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 request, ready to write; `url` gives the Host and the path."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def measure(url: str, connections: int, next_request: NextRequest, *, seconds: float) -> Measurement:
    """Run until `seconds` pass or `next_request` has no more; answers in arrival order."""
    return measure_many([url], connections, next_request, seconds=seconds)


def measure_many(urls: list[str], connections: int, next_request: NextRequest, *, seconds: float) -> Measurement:
    """The same over several copies: connection i talks to urls[i % len(urls)]."""
    return asyncio.run(_measure(urls, connections, next_request, seconds))


async def _measure(urls: list[str], connections: int, next_request: NextRequest, seconds: float) -> Measurement:
    targets = [(parts.hostname or "127.0.0.1", parts.port or 80) for parts in map(urlsplit, urls)]
    answers: list[Answer] = []
    errors: list[str] = []
    cpu_started, started = time.process_time(), time.perf_counter()
    deadline = started + seconds
    last_answer = [started]
    await asyncio.gather(*(
        _connection(*targets[number % len(targets)], next_request, deadline, answers, errors, last_answer)
        for number in range(connections)
    ))
    return Measurement(
        connections, answers, errors, last_answer[0] - started, time.process_time() - cpu_started,
    )


async def _connection(
    host: str, port: int, next_request: NextRequest, deadline: float,
    answers: list[Answer], errors: list[str], last_answer: list[float],
) -> None:
    reader = writer = None
    try:
        while time.perf_counter() < deadline:
            payload = next_request()
            if payload is None:
                return
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            sent = time.perf_counter()
            writer.write(payload)
            try:
                status, replayed, body, close = await _read_answer(reader)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(type(exc).__name__)
                writer.close()
                reader = writer = None
                continue
            now = time.perf_counter()
            answers.append(Answer(status, now - sent, replayed, body))
            last_answer[0] = max(last_answer[0], now)
            if close:
                writer.close()
                reader = writer = None
    except OSError as exc:  # could not connect at all
        errors.append(type(exc).__name__)
    finally:
        if writer is not None:
            writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, replayed, close, chunked = 0, False, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"idempotent-replayed":
            replayed = value.strip() == b"true"
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    body = await (_read_chunked(reader) if chunked else reader.readexactly(length))
    return status, replayed, body, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return bytes(body)
        body += chunk[:-2]
