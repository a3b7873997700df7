"""Ctrl-C (and SIGTERM) held back while a child process is spawned.

A KeyboardInterrupt raised inside `subprocess.Popen`, after the fork and before the Popen
object exists, leaves a child that nothing holds a handle to. Ours run in sessions of
their own, so the terminal's Ctrl-C misses them too: `make run` would exit and leave a
server or a copy running. Inside `signals_held()` a signal is noted, and delivered as
soon as the block (and the assignment of the new process) is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers on the main thread only: nothing to hold here
        return
    arrived: list[int] = []

    def note(number: int, _frame: object) -> None:
        arrived.append(number)

    before = {signum: signal.signal(signum, note) for signum in HELD}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(arrived):
            signal.raise_signal(number)  # now, with the handler the program chose
