"""A request to stop the run, shared by every probe thread.

When the run is interrupted (Ctrl-C, or SIGTERM from a CI timeout), the signal handler
makes the request; a probe waiting out a busy server's back-off then stops waiting at
once, so the interrupted run reaches its report within seconds rather than after the
whole back-off budget.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def clear() -> None:
    """Forget an earlier request (a new run in the same process starts afresh)."""
    _requested.clear()


def sleep(seconds: float) -> bool:
    """Wait up to seconds; True, at once, when a stop is or gets requested."""
    return _requested.wait(max(seconds, 0.0))
