"""The adjustments to functions-framework: its own error answers become problems, each
worker gets a lifespan (what it starts when it begins serving and stops at exit), and
the gunicorn it starts gets our settings (one JSON log shape, nothing written outside
/tmp and /dev/shm).

functions-framework 3.10's ASGI app routes every path to `handle`, except those its
router answers itself with a text/plain "Not Found": /robots.txt, /favicon.ico, and a
path its `{path:path}` pattern cannot match (one holding a newline, %0A). It has no
error-handler hook for async functions (upstream issue #401), so the app it builds gets
Starlette's own hook: the class it instantiates is swapped, before it builds the app,
for one that renders those answers as problem+json like every other. The version range
in requirements.txt is held, and tests/test_framing.py fails if this stops working.

functions-framework builds gunicorn's settings in code (`UvicornApplication`), so neither
a gunicorn.conf.py nor GUNICORN_CMD_ARGS reaches them; the class its server factory looks
up when it starts is swapped for a subclass that adds `server_settings()`. The function is
imported before that look-up, so the swap is in place in time.
"""

from __future__ import annotations

import inspect
import os
import socket
from typing import Any, Callable

import functions_framework._http.gunicorn
import functions_framework.aio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import logs
from .problems import MethodNotAllowed, NotFound, Problem

_served_by: str | None = None


def copy_name() -> str:
    """Host and pid name the copy and worker that answered; made once per process (the
    function is imported by gunicorn's master before it forks the workers, and a fork
    forgets it), not per request."""
    global _served_by
    if _served_by is None:
        _served_by = f"{socket.gethostname()}/{os.getpid()}"
    return _served_by


def _forget_copy_name() -> None:
    global _served_by
    _served_by = None


os.register_at_fork(after_in_child=_forget_copy_name)


async def _framework_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    problem: Problem = MethodNotAllowed("this route does not allow the method") if status == 405 else NotFound("no such route")
    body, status, headers = problem.render()
    return Response(body, status, headers={**headers, "x-served-by": copy_name()})


_lifespan: Callable[[Any], Any] | None = None


class _ProblemAnsweringStarlette(Starlette):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exception_handlers", {HTTPException: _framework_error})
        if _lifespan is not None:  # uvicorn runs it in each worker, after the fork
            kwargs.setdefault("lifespan", _lifespan)
        super().__init__(*args, **kwargs)


class FrameworkChanged(RuntimeError):
    """functions-framework no longer builds its app the way this patch relies on."""


def answer_framework_errors_as_problems(lifespan: Callable[[Any], Any] | None = None) -> None:
    """Fails the start-up, rather than silently answering text/plain 404s, if an upgrade
    renamed what this replaces: the app's class, looked up by name when the app is built."""
    framework = functions_framework.aio
    builds_from_the_name = any(
        "Starlette" in value.__code__.co_names for value in vars(framework).values()
        if inspect.isfunction(value) and value.__module__ == framework.__name__
    )
    if getattr(framework, "Starlette", None) not in (Starlette, _ProblemAnsweringStarlette) or not builds_from_the_name:
        raise FrameworkChanged("functions_framework.aio no longer builds its app from `Starlette`: "
                               "update function/framework_patch.py for this functions-framework version")
    global _lifespan
    _lifespan = lifespan
    functions_framework.aio.Starlette = _ProblemAnsweringStarlette  # type: ignore[misc]


def server_settings() -> dict[str, Any]:
    """What the gunicorn under functions-framework is given on top of its own settings."""
    settings: dict[str, Any] = {
        "logconfig_dict": logs.LOGGING,
        # gunicorn 25+ opens a control socket under $HOME (/nonexistent in the image):
        # an error line at every start, and a write outside /tmp. Nothing here uses it.
        "control_socket_disable": True,
    }
    if os.path.isdir("/dev/shm"):
        # The worker heartbeat file: in memory, not on the (read-only) root filesystem.
        settings["worker_tmp_dir"] = "/dev/shm"
    return settings


class _OurGunicorn(functions_framework._http.gunicorn.UvicornApplication):
    def load_config(self) -> None:
        super().load_config()
        for name, value in server_settings().items():
            self.cfg.set(name, value)


def serve_with_our_server_settings() -> None:
    current = getattr(functions_framework._http.gunicorn, "UvicornApplication", None)
    # An upgrade that renames what is swapped must fail here, not silently log in text.
    if current is None or not callable(getattr(current, "load_config", None)):
        raise FrameworkChanged("functions-framework no longer starts gunicorn through "
                               "UvicornApplication.load_config: update function/framework_patch.py")
    functions_framework._http.gunicorn.UvicornApplication = _OurGunicorn  # type: ignore[misc]
