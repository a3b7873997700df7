"""The log watch (server_errors.py) that fails a test module whose copies answered a 500
or crashed: it must see every such line, or that check could never fail."""

from __future__ import annotations

from hardening.server_errors import server_errors


def test_the_log_watch_sees_an_error_line_from_any_server_and_any_line_that_is_not_json() -> None:
    log = "\n".join([
        '{"time":"t","level":"info","message":"request","status":201}',
        '{"time":"t","level":"error","message":"unhandled error","route":"create"}',
        '{"time":"t","level":"error","message":"Exception in ASGI application","logger":"uvicorn.error"}',
        '{"time":"t","level":"critical","message":"WORKER TIMEOUT (pid:7)","logger":"gunicorn.error"}',
        "Traceback (most recent call last):",
        '{"time":"t","level":"info","message":"Worker (pid:7) was sent SIGTERM!","logger":"gunicorn.error"}',
        '{"time":"t","level":"info","message":"request","status":503}',
    ])
    assert len(server_errors(log)) == 4
    assert server_errors('{"level":"warning","message":"schema not checked at start-up"}') == []
