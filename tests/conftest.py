"""The project's own tests: loopback only, enforced twice (netguard and pytest-socket)."""

import pytest

pytest_plugins = ["pytester", "tests.netguard"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "allow_hosts") and not config.option.allow_hosts:
        config.option.allow_hosts = "127.0.0.1,::1"
