"""scripts/benchmark.py measures exactly the mailbox counts README names."""

from __future__ import annotations

import importlib.util

import pytest

from tests.audits import PROJECT


@pytest.fixture(scope="module")
def benchmark():
    path = PROJECT / "scripts" / "benchmark.py"
    spec = importlib.util.spec_from_file_location("ewsready_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("count", [100, 1000])
@pytest.mark.parametrize("access", ["impersonation", "delegate"])
def test_the_benchmark_invites_exactly_the_count(benchmark, count, access):
    scenario = benchmark.scenario_for(count, access)
    assert len(scenario.audit.invited) == count
    assert len(set(scenario.audit.invited)) == count
    assert scenario.audit.access == access


def test_the_defaults_are_the_counts_readme_names(benchmark):
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    assert "for 100 and 1,000 mailboxes" in readme
    assert "default=[100, 1000]" in (PROJECT / "scripts" / "benchmark.py").read_text()


def test_a_count_below_the_scenario_is_refused(benchmark):
    with pytest.raises(ValueError, match="--mailboxes 2: the healthy scenario alone"):
        benchmark.scenario_for(2, "impersonation")
