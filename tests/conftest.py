"""The project's own tests: loopback only, enforced twice (netguard and pytest-socket)."""

import pytest

pytest_plugins = ["pytester", "tests.netguard"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "allow_hosts") and not config.option.allow_hosts:
        config.option.allow_hosts = "127.0.0.1,::1"


@pytest.fixture(scope="session")
def scenario_run(tmp_path_factory):
    """The audit of a lab scenario, run once per session and shared by the tests."""
    from tests.audits import AuditRun, run_audit

    runs: dict[str, AuditRun] = {}

    def get(name: str) -> AuditRun:
        if name not in runs:
            workdir = tmp_path_factory.mktemp(name)
            runs[name] = run_audit(workdir, "--lab", "--lab-scenario", name)
        return runs[name]

    return get


@pytest.fixture(scope="module")
def real():
    """The folder of real Export-Clixml files; missing means a broken checkout."""
    from tests.audits import REAL_EXPORTS

    if not (REAL_EXPORTS / "GetExchangeServer.xml").is_file():
        pytest.fail(
            f"the real Exchange exports are missing: expected {REAL_EXPORTS}",
            pytrace=False,
        )
    return REAL_EXPORTS
