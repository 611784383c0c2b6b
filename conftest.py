"""Wires the ewsready fixtures and report hooks into pytest."""

pytest_plugins = ["fixtures.options", "fixtures.audit", "fixtures.reporting"]
