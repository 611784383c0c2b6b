"""The audit sends itself SIGTERM again at the two moments a second signal used to
break: while pytest handles the first interruption, and while the report is being
written."""

from __future__ import annotations

import os
import signal
import time


def _signal_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # the handler runs in this thread, within this wait


def pytest_keyboard_interrupt(excinfo) -> None:  # type: ignore[no-untyped-def]
    _signal_self()


def pytest_html_results_summary(prefix, summary, postfix, session) -> None:  # type: ignore[no-untyped-def]
    _signal_self()
