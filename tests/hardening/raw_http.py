"""HTTP/1.1 over a plain socket, for requests that `requests` refuses to send (CR, LF or
NUL inside a header value, a broken request line)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


def send_raw(url: str, method: bytes, target: bytes, headers: list[bytes], body: bytes = b"") -> RawAnswer:
    """Send the bytes as written, with `Connection: close`, and read the whole answer."""
    parts = urlsplit(url)
    head = [method + b" " + target + b" HTTP/1.1", b"Host: " + parts.netloc.encode(), b"Connection: close"]
    if body:
        head.append(b"Content-Length: " + str(len(body)).encode())
    request = b"\r\n".join(head + headers) + b"\r\n\r\n" + body
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return _parsed(received)


def exchange(url: str, request: bytes, *, wait_seconds: float = 3) -> RawAnswer | None:
    """Send bytes exactly as given (no framing added); the answer, or None when none came
    within `wait_seconds` (a server still waiting for an announced body) or the server
    closed the connection without one."""
    parts = urlsplit(url)
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=wait_seconds) as connection:
        connection.sendall(request)
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return _parsed(received) if received else None


def _parsed(received: bytes) -> RawAnswer:
    header_block, _, answer_body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), headers, answer_body)
