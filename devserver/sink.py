"""A real HTTP receiver for the function's order events (K_SINK), as a process of its own.

Tests, the demo and the bench start it with `EventSink`; it can be told to answer 503,
to answer slowly, or to hang, and it can be killed (port closed) and started again on
the same port. Every POST it accepts is appended to a JSON-lines file, which survives
its restarts and is read directly by whoever started it. It also notes when one event
id arrives while a POST of the same id is still being answered ("overlap"): two copies
must never post one pending row at the same moment.

Run by EventSink as `python -m devserver.sink PORT RECORD_FILE`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from .servers import _Process, free_port
from .waiting import wait_until

CONTROL_PATH = "/_sink/answer"


# --- the receiver process ------------------------------------------------------------


class _Behaviour:
    """How the receiver answers events now; changed through CONTROL_PATH."""

    def __init__(self, record: Path) -> None:
        self.status, self.delay_seconds, self.hang = 202, 0.0, False
        self.changed = threading.Condition()
        self.record = record
        self.in_flight: Counter[str] = Counter()

    def write(self, line: dict[str, Any]) -> None:
        with self.changed:  # one writer at a time, whole lines
            with open(self.record, "a", encoding="utf-8") as record:
                record.write(json.dumps(line) + "\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the function's client expects
    behaviour: _Behaviour

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the record says it all
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == CONTROL_PATH:
            self._control(json.loads(body))
            return
        behaviour = self.behaviour
        event_id = self.headers.get("ce-id") or ""
        with behaviour.changed:
            if behaviour.in_flight[event_id]:
                behaviour.write({"overlap": event_id, "at": time.time()})
            behaviour.in_flight[event_id] += 1
        try:
            self._answer_event(behaviour, event_id, body)
        finally:
            with behaviour.changed:
                behaviour.in_flight[event_id] -= 1

    def _answer_event(self, behaviour: _Behaviour, event_id: str, body: bytes) -> None:
        with behaviour.changed:
            hang, status, delay = behaviour.hang, behaviour.status, behaviour.delay_seconds
            if hang:  # until told otherwise; then drop the connection unanswered
                behaviour.changed.wait_for(lambda: not behaviour.hang)
        if hang:
            self.close_connection = True
            return
        if delay:
            time.sleep(delay)
        if 200 <= status < 300:
            behaviour.write({
                "id": event_id, "at": time.time(), "data": body.decode("utf-8", "replace"),
                "headers": {name.lower(): value for name, value in self.headers.items()
                            if name.lower().startswith("ce-") or name.lower() in ("content-type", "traceparent")},
            })
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def _control(self, wanted: dict[str, Any]) -> None:
        behaviour = self.behaviour
        with behaviour.changed:
            behaviour.status = int(wanted.get("status", 202))
            behaviour.delay_seconds = float(wanted.get("delay_seconds", 0.0))
            behaviour.hang = bool(wanted.get("hang", False))
            behaviour.changed.notify_all()
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()


def serve(port: int, record: Path) -> None:
    _Handler.behaviour = _Behaviour(record)
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.serve_forever()


# --- the handle its starter holds ------------------------------------------------------


class EventSink(_Process):
    """The receiver on a fixed port (kept across restarts), recording into `workdir`."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__()
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port or free_port()
        self.record = workdir / "received.jsonl"
        self.record.touch()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> EventSink:
        self._spawn([sys.executable, "-m", "devserver.sink", str(self.port), str(self.record)],
                    self.workdir / "sink.log")
        self._wait_ready()
        return self

    def _answers(self) -> bool:
        try:
            requests.post(self.url.rstrip("/") + CONTROL_PATH, json={}, timeout=2)
            return True
        except requests.RequestException:
            return False

    def answer(self, status: int = 202, *, delay_seconds: float = 0.0, hang: bool = False) -> None:
        """From now on: answer events with `status`, after `delay_seconds`, or not at all."""
        requests.post(self.url.rstrip("/") + CONTROL_PATH, timeout=5,
                      json={"status": status, "delay_seconds": delay_seconds, "hang": hang})

    def lines(self) -> list[dict[str, Any]]:
        text = self.record.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every event accepted, in arrival order (a republished event appears again)."""
        return [line for line in self.lines() if "id" in line]

    def event_ids(self) -> set[str]:
        return {line["id"] for line in self.deliveries()}

    def overlaps(self) -> list[str]:
        """Event ids that arrived while a POST of the same id was still being answered."""
        return [line["overlap"] for line in self.lines() if "overlap" in line]

    def wait_for(self, event_ids: set[str], timeout_seconds: float) -> None:
        wait_until(lambda: event_ids <= self.event_ids(), timeout_seconds=timeout_seconds, poll_seconds=0.05,
                   what=f"{len(event_ids - self.event_ids())} of {len(event_ids)} events at the sink")

    def forget(self) -> None:
        """Start a new record (between tests sharing one receiver)."""
        self.record.write_text("")


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
