"""Wires the ewsready fixtures and report hooks into pytest.

The command-line options (fixtures.options) come in through the package's pytest11
entry point, so pytest knows them before it reads the arguments.
"""

pytest_plugins = ["fixtures.audit", "fixtures.reporting"]
