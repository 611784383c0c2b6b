"""The report hooks: an error inside a check is that check's 'could not evaluate',
in one line, with the traceback in the log; the other checks run on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ewsready.secret import MASK
from fixtures.reporting import all_checks
from tests.audits import PROJECT, run_audit

CANARY = "canary-Pw-5be1c7"
VERSION = "checks/test_version.py"


def test_an_error_inside_a_check_is_could_not_evaluate(tmp_path):
    log_file = tmp_path / "run.log"
    run = run_audit(
        tmp_path,
        "--lab",
        "--lab-scenario",
        "healthy",
        f"--log-file={log_file}",
        "-p",
        "tests.plugins.broken_rule",
        env={"EWSREADY_PASSWORD": CANARY},
    )
    checks = {c["nodeid"].split("::")[1]: c for c in run.document["checks"]}

    assert run.returncode == 1, (run.stdout + run.stderr)[-3000:]
    assert run.document["verdict"] == "NOT READY"
    # Every check ran, and those the errors did not touch passed (or only noted).
    assert len(checks) == all_checks(PROJECT)
    broken = {
        "test_exchange_is_2013_or_later",
        "test_every_exchange_server_is_2013_or_later",
        "test_every_exchange_server_build_is_supported",
        # Each server's certificate store is read by the server's name.
        "test_exchange_serves_a_fit_certificate",
    }
    failed = {n for n, c in checks.items() if c["severity"] not in ("passed", "note")}
    assert failed == broken

    rule = checks["test_exchange_is_2013_or_later"]
    [finding] = rule["findings"]
    sentence = (
        "An error inside ewsready stopped the check "
        f"{VERSION}::test_exchange_is_2013_or_later (KeyError: 'build of {MASK}'); "
        "the traceback is in the log."
    )
    assert finding == {**finding, "severity": "could not evaluate"}
    assert finding["sentence"] == sentence
    assert finding["evidence"] == ["raised in the check itself"]
    assert rule["message"] == f"Could not evaluate: {sentence}"
    # The probe's error fails both checks that use its facts, in its first line only.
    for name in broken - {"test_exchange_is_2013_or_later"}:
        [finding] = checks[name]["findings"]
        assert finding["severity"] == "could not evaluate"
        assert finding["sentence"] == (
            f"An error inside ewsready stopped the check {checks[name]['nodeid']} "
            "(ValueError: AdminDisplayVersion 'Version 15.x' not understood); the "
            "traceback is in the log."
        )
        assert finding["evidence"] == ["raised while gathering the facts it judges"]
        assert "\n" not in checks[name]["message"]

    # The tracebacks are in the run's log file, the probe's once.
    log = log_file.read_text(encoding="utf-8")
    assert log.count("Traceback (most recent call last)") == 2
    assert "in broken_rule" in log and "in broken_probe" in log
    # The certificate check runs first and meets the probe's error first.
    first = checks["test_exchange_serves_a_fit_certificate"]["nodeid"]
    assert (
        "test_every_exchange_server_build_is_supported could not evaluate: "
        "ValueError: AdminDisplayVersion 'Version 15.x' not understood (the error "
        f"logged for {first})"
    ) in log
    # ... and not in the report.
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert sentence.replace("'", "&#39;") in page
    assert "Traceback" not in page
    junit = (run.run_dir / "junit.xml").read_text(encoding="utf-8")
    assert "Traceback" not in junit
    ET.fromstring(junit)
    for path in [log_file, *(tmp_path / "reports").rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in run.stdout + run.stderr


def _junit_cases(run) -> dict[str, list[tuple[str, str]]]:
    """classname::name -> the properties of that test case, in order."""
    tree = ET.parse(run.run_dir / "junit.xml")
    return {
        f"{case.get('classname')}::{case.get('name')}": [
            (p.get("name"), p.get("value")) for p in case.iter("property")
        ]
        for case in tree.iter("testcase")
    }


def test_junit_cases_carry_their_findings(scenario_run):
    run = scenario_run("contoso")
    cases = _junit_cases(run)
    checks = run.document["checks"]
    assert len(cases) == len(checks) == all_checks(PROJECT)

    for check in checks:
        path, name = check["nodeid"].split("::")
        classname = path.removesuffix(".py").replace("/", ".")
        expected = [("severity", check["severity"])]
        for number, finding in enumerate(check["findings"], start=1):
            expected.append((f"finding.{number}.severity", finding["severity"]))
            expected.append((f"finding.{number}.sentence", finding["sentence"]))
            if finding["fix"]:
                expected.append((f"finding.{number}.fix", finding["fix"]))
        assert cases[f"{classname}::{name}"] == expected, check["nodeid"]

    # A warning passes as a test case, but its finding is there to read.
    [case] = [
        c
        for k, c in cases.items()
        if k.endswith("test_certificate_is_within_its_validity")
    ]
    assert ("severity", "warning") in case
    assert ("finding.1.fix", "certificate_expiring") in case
    severities = {
        value for c in cases.values() for key, value in c if key == "severity"
    }
    assert {"failure", "warning", "note", "passed"} <= severities


def test_check_names_are_whole_sentences(scenario_run):
    run = scenario_run("contoso")
    names = {c["nodeid"].split("::")[1]: c["name"] for c in run.document["checks"]}
    assert names["test_service_account_signs_in_with_basic"] == (
        "A 401 while Basic is offered means a wrong, expired or locked password; "
        "Active Directory, when it can be read, says which."
    )
    for name in names.values():
        assert name.endswith("."), name
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Active Directory, when it can be read, says which." in page


def test_shared_could_not_evaluate_lines_are_printed_once(scenario_run):
    run = scenario_run("winrm_receive_hangs")
    summary = run.stdout.split("report: ", 1)[1].split("Generated html report")[0]
    lines = [line for line in summary.splitlines() if line.startswith("  [")]
    assert len(lines) == len(set(lines)), summary
    unreadable = [line for line in lines if "[could not evaluate]" in line]
    assert any(" 2 checks: Exchange servers (Get-ExchangeServer)" in x for x in lines)
    # Every check that could not evaluate is counted once in those lines.
    counted = sum(
        int(line.split("] ", 1)[1].split(" check")[0]) if " checks: " in line else 1
        for line in unreadable
    )
    assert counted == run.document["counts"]["could not evaluate"]
