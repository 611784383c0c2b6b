"""The lab's EWS answers ErrorServerBusy (0.5 s back-off) to every operation, so the
audit sits in back-off from the first signed-in check on, long enough to interrupt."""

from __future__ import annotations

from dataclasses import replace

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from fixtures.options import SCENARIO

    if SCENARIO in config.stash:
        config.stash[SCENARIO] = replace(
            config.stash[SCENARIO], busy_first_calls=1_000_000, busy_back_off_ms=500
        )
