"""A check that swallows the interruption (as careless library code might): the run
must still stop after it."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    try:
        return (yield)
    except KeyboardInterrupt:
        return None
