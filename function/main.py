"""Entry point: functions-framework (`--asgi`) loads this file and awaits `handle`.

Loading it starts the copy, in the one call below: the settings (or a one-line exit),
the metrics shared between workers, the schema, and the handler (startup.py). It runs
in the process functions-framework starts, before gunicorn forks its workers; the
request path itself is dispatch.py.
"""

from __future__ import annotations

import os

from . import startup

SETTINGS, handle = startup.start(os.environ)
