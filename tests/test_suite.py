"""The audit as a whole: pytest --lab on every scenario, run as a user would run it."""

from __future__ import annotations

import base64

import pytest

from lab.scenario import load_scenario, scenario_names
from tests.audits import run_audit

OUTCOME_OF = {
    "failure": "failed",
    "could not evaluate": "failed",
    "warning": "warned",
    "blocked": "blocked",
}


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
def test_each_scenario_fails_exactly_the_expected_checks(scenario_run, name):
    scenario = load_scenario(name)
    run = scenario_run(name)
    document = run.document

    outcomes = marker_outcomes(document)
    expected = {m: "failed" for m in scenario.expect.failed}
    expected |= {m: "warned" for m in scenario.expect.warned}
    expected |= {m: "blocked" for m in scenario.expect.blocked}
    actual = {m: o for m, o in outcomes.items() if o != "passed"}
    assert actual == expected, run.stdout[-3000:]

    ready = not scenario.expect.failed and not scenario.expect.blocked
    assert document["ready"] is ready
    assert run.returncode == (0 if ready else 1)


@pytest.mark.parametrize(
    "name", [n for n in scenario_names() if load_scenario(n).expect.failed]
)
def test_every_failure_carries_a_filled_in_fix(scenario_run, name):
    for check in scenario_run(name).document["checks"]:
        if check["severity"] != "failure":
            continue
        fixes = [f for f in check["findings"] if f["commands"]]
        assert fixes, f"{check['nodeid']} failed without a fix command"
        for fix in fixes:
            assert fix["doc"].startswith("https://")
            assert fix["why"]
            assert "{" + "host}" not in fix["commands"]  # every placeholder filled


def test_contoso_report_folder(tmp_path):
    run = run_audit(tmp_path, "--lab")
    document, run_dir = run.document, run.run_dir

    assert run.returncode == 1
    for name in ("report.html", "results.json", "junit.xml", "remediation.ps1"):
        assert (run_dir / name).is_file(), name
    assert "ewsready: NOT READY" in run.stdout
    assert f"report: {run_dir}/report.html" in run.stdout
    assert document["organisation"].startswith("contoso")
    assert document["url"].endswith("/EWS/Exchange.asmx")

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "NOT READY" in page
    assert "user1@legacy.contoso.example is a secondary address of User One" in page
    commands = [
        f["commands"]
        for c in document["checks"]
        for f in c["findings"]
        if f["commands"]
    ]
    assert any("Set-Mailbox -Identity 'user1@contoso.example'" in c for c in commands)
    # A byte-order mark, so Windows PowerShell 5.1 reads the file as UTF-8.
    assert (run_dir / "remediation.ps1").read_bytes().startswith(b"\xef\xbb\xbf")
    script = (run_dir / "remediation.ps1").read_text(encoding="utf-8-sig")
    assert "@('room.harbour@contoso.example') | ForEach-Object" in script


def test_two_runs_get_two_folders(tmp_path):
    run_audit(tmp_path, "--lab", "--lab-scenario", "healthy", "-m", "version")
    run_audit(tmp_path, "--lab", "--lab-scenario", "healthy", "-m", "version")
    folders = [p for p in (tmp_path / "reports").iterdir() if p.name[0].isdigit()]
    assert len(folders) == 2


def test_without_a_mode_prints_usage_not_a_traceback(tmp_path):
    run = run_audit(tmp_path)
    assert run.returncode == 4
    assert "ewsready needs something to audit" in run.stderr
    assert "pytest --lab" in run.stderr
    # Paths are written with '=', as README asks: after a space pytest may take the
    # path as a place to look for tests.
    assert "pytest --tenant=tenant.toml" in run.stderr
    assert "pytest --from-export=DIR" in run.stderr
    assert "--tenant " not in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_unknown_scenario_is_one_line(tmp_path):
    run = run_audit(tmp_path, "--lab", "--lab-scenario", "nosuch")
    assert run.returncode == 4
    output = run.stdout + run.stderr
    assert (
        "no lab scenario named 'nosuch'; known: account_expired, cert_expired" in output
    )
    assert "Traceback" not in output


def test_markers_select_checks(tmp_path):
    run = run_audit(tmp_path, "--lab", "-m", "certificate")
    assert {m for c in run.document["checks"] for m in c["markers"]} == {"certificate"}
    assert run.returncode == 0  # contoso's certificate only warns


def test_canary_password_appears_in_no_output(tmp_path):
    canary, shell_canary = "canary-Pw-7f3e9d", "canary-Shell-41c2aa"
    run = run_audit(
        tmp_path,
        "--lab",
        "--log-level=DEBUG",
        "-l",
        "-rA",
        env={"EWSREADY_PASSWORD": canary, "EWSREADY_SHELL_PASSWORD": shell_canary},
    )
    assert run.returncode == 1
    assert run.document["checks"], "the audit ran"
    basic = base64.b64encode(f"svc-calendar@contoso.example:{canary}".encode()).decode()
    # The shell and the domain controller are signed in to with the lab's admin.
    admin = "audit-reader@contoso.example"
    shell_basic = base64.b64encode(f"{admin}:{shell_canary}".encode()).decode()
    for secret in (canary, basic, shell_canary, shell_basic):
        assert secret not in run.stdout + run.stderr
        for path in (tmp_path / "reports").rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_long_scans_show_progress(scenario_run):
    run = scenario_run("many_mailboxes")
    assert "ewsready: resolving invited addresses: 405/405" in run.stdout
    assert "ewsready: reading calendars: 405/405" in run.stdout


def test_report_dir_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    run = run_audit(tmp_path, "--lab", f"--report-dir={blocker}")
    assert run.returncode == 4
    assert "cannot make a run folder there" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_a_password_basic_cannot_send_is_one_line_in_lab_mode(tmp_path):
    run = run_audit(tmp_path, "--lab", env={"EWSREADY_PASSWORD": "Pw\u20acuro"})
    assert run.returncode == 4
    assert "EWSREADY_PASSWORD: the password holds a character outside Latin-1" in (
        run.stderr
    )
    assert "Traceback" not in run.stderr + run.stdout and "\u20ac" not in run.stderr
