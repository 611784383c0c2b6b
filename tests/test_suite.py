"""The audit as a whole: pytest --lab on every scenario, run as a user would run it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lab.scenario import load_scenario, scenario_names

PROJECT = Path(__file__).resolve().parents[1]
OUTCOME_OF = {
    "failure": "failed",
    "could not evaluate": "failed",
    "warning": "warned",
    "blocked": "blocked",
}


def run_audit(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    """Run the audit in a subprocess, guarded to loopback, reports under pytester's dir."""
    pytester.chdir()
    os.environ["PYTHONPATH"] = str(PROJECT)
    report_dir = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        "-p",
        "tests.netguard",
        "--rootdir",
        str(PROJECT),
        "-c",
        str(PROJECT / "pytest.ini"),
        "--report-dir",
        str(report_dir),
        *args,
        str(PROJECT / "checks"),
        timeout=300,
    )
    latest = report_dir / "latest" / "results.json"
    document = json.loads(latest.read_text(encoding="utf-8")) if latest.exists() else {}
    return result, document


def marker_outcomes(document: dict) -> dict[str, str]:
    """The worst outcome per marker: failed > blocked > warned > passed."""
    rank = {"passed": 0, "warned": 1, "blocked": 2, "failed": 3}
    worst: dict[str, str] = {}
    for check in document["checks"]:
        outcome = OUTCOME_OF.get(check["severity"], "passed")
        for marker in check["markers"]:
            if rank[outcome] >= rank[worst.get(marker, "passed")]:
                worst[marker] = outcome
    return worst


@pytest.mark.parametrize("name", scenario_names())
def test_each_scenario_fails_exactly_the_expected_checks(pytester, name):
    scenario = load_scenario(name)
    result, document = run_audit(pytester, "--lab", "--lab-scenario", name)

    outcomes = marker_outcomes(document)
    expected = {m: "failed" for m in scenario.expect.failed}
    expected |= {m: "warned" for m in scenario.expect.warned}
    expected |= {m: "blocked" for m in scenario.expect.blocked}
    actual = {m: o for m, o in outcomes.items() if o != "passed"}
    assert actual == expected, result.stdout.str()[-3000:]

    ready = not scenario.expect.failed and not scenario.expect.blocked
    assert document["ready"] is ready
    assert result.ret == (0 if ready else 1)


@pytest.mark.parametrize(
    "name", [n for n in scenario_names() if load_scenario(n).expect.failed]
)
def test_every_failure_carries_a_filled_in_fix(pytester, name):
    _, document = run_audit(pytester, "--lab", "--lab-scenario", name)
    for check in document["checks"]:
        if check["severity"] != "failure":
            continue
        fixes = [f for f in check["findings"] if f["commands"]]
        assert fixes, f"{check['nodeid']} failed without a fix command"
        for fix in fixes:
            assert fix["doc"].startswith("https://")
            assert fix["why"]
            assert "{" + "host}" not in fix["commands"]  # every placeholder filled


def test_contoso_report_folder(pytester):
    result, document = run_audit(pytester, "--lab")
    run_dir = (pytester.path / "reports" / "latest").resolve()

    assert result.ret == 1
    for name in ("report.html", "results.json", "junit.xml", "remediation.ps1"):
        assert (run_dir / name).is_file(), name
    result.stdout.fnmatch_lines(["*ewsready: NOT READY*", f"report: {run_dir}/report.html"])
    assert document["organisation"].startswith("contoso")
    assert document["url"].endswith("/EWS/Exchange.asmx")

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "NOT READY" in page
    assert "user1@legacy.contoso.example is a secondary address of User One" in page
    commands = [
        f["commands"] for c in document["checks"] for f in c["findings"] if f["commands"]
    ]
    assert any("Set-Mailbox -Identity 'user1@contoso.example'" in c for c in commands)
    script = (run_dir / "remediation.ps1").read_text(encoding="utf-8")
    assert "@('room.harbour@contoso.example') | ForEach-Object" in script


def test_two_runs_get_two_folders(pytester):
    run_audit(pytester, "--lab", "--lab-scenario", "healthy", "-m", "version")
    run_audit(pytester, "--lab", "--lab-scenario", "healthy", "-m", "version")
    folders = [p for p in (pytester.path / "reports").iterdir() if p.name[0].isdigit()]
    assert len(folders) == 2


def test_without_a_mode_prints_usage_not_a_traceback(pytester):
    result, _ = run_audit(pytester)
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*ewsready needs something to audit*", "*pytest --lab*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_unknown_scenario_is_one_line(pytester):
    result, _ = run_audit(pytester, "--lab", "--lab-scenario", "nosuch")
    assert result.ret == 4
    output = result.stdout.str() + result.stderr.str()
    assert "no lab scenario named 'nosuch'; known: cert_expired" in output
    assert "Traceback" not in output


def test_markers_select_checks(pytester):
    result, document = run_audit(pytester, "--lab", "-m", "certificate")
    assert {m for c in document["checks"] for m in c["markers"]} == {"certificate"}
    assert result.ret == 0  # contoso's certificate only warns
