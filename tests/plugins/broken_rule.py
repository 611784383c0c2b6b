"""Programming errors inside the audit: a rule that raises KeyError with the password
in its message, and a probe that raises a two-line ValueError."""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from ewsready.collect import Collector
    from ewsready.rules import version

    def broken_rule(facts):  # type: ignore[no-untyped-def]
        table = {}
        return table[f"build of {os.environ.get('EWSREADY_PASSWORD', '')}"]

    # One error, as a probe the collector runs once gives every check that asks.
    error = ValueError("AdminDisplayVersion 'Version 15.x' not understood\nmore")

    def broken_probe(self):  # type: ignore[no-untyped-def]
        raise error

    version.at_least_2013 = broken_rule
    Collector.exchange_servers = broken_probe
