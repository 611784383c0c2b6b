"""Ctrl-C and SIGTERM during an audit: the checks stop, and the report is still
written, whole, saying what stopped the run."""

from __future__ import annotations

import signal
import time
import xml.etree.ElementTree as ET

import pytest

from ewsready import stop
from fixtures.reporting import all_checks
from fixtures.stopping import RunStopped, StopSignals
from tests.audits import PROJECT, AuditRun, RunningAudit, run_audit

# Every signed-in request is answered ErrorServerBusy, so the audit waits in back-off
# from the fourth check on: a window of half a minute to stop it in.
STALLED = ("--lab", "--lab-scenario", "healthy", "-v")
STALL = ("-p", "tests.plugins.stalled_server")
BEFORE_THE_STALL = {
    "test_ews_offers_basic_authentication",
    "test_basic_is_on_in_every_ews_virtual_directory",
    "test_configured_basic_reaches_the_wire",
}
REPORT_FILES = ["junit.xml", "remediation.ps1", "report.html", "results.json"]


def stopped_run(tmp_path, signum: int, *plugins: str) -> tuple[AuditRun, float]:
    """Start the stalled audit, signal it once its first checks are done, and return
    the run with the seconds it took to end after the signal."""
    audit = RunningAudit(tmp_path, *STALLED, *STALL, *plugins)
    audit.wait_for("test_configured_basic_reaches_the_wire PASSED")
    sent = time.monotonic()
    audit.process.send_signal(signum)
    run = audit.finish()
    return run, time.monotonic() - sent


def assert_whole_report(run: AuditRun) -> str:
    """The four files are there, complete, and nothing else is (no hidden leftovers
    of an interrupted write); returns the page."""
    assert run.run_dir is not None, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(p.name for p in run.run_dir.iterdir()) == REPORT_FILES
    assert run.document["checks"] is not None  # results.json parsed
    ET.parse(run.run_dir / "junit.xml")
    script = (run.run_dir / "remediation.ps1").read_text(encoding="utf-8-sig")
    assert script.startswith("# ewsready remediation script")
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>")
    return page


@pytest.mark.parametrize(
    "signum, shown",
    [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C (SIGINT)")],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_stopped_run_writes_its_report(tmp_path, signum, shown):
    run, seconds = stopped_run(tmp_path, signum)
    output = run.stdout + run.stderr

    assert run.returncode == 2, output[-3000:]
    # The stop does not wait for the busy server's back-off (30 s here).
    assert seconds < 15
    document = run.document
    assert document["verdict"] == "INCOMPLETE"
    assert document["ready"] is False
    assert document["interrupted"] is True
    assert document["stopped_by"] == signal.Signals(signum).name
    # The checks done before the signal keep their results; no other check has one.
    done = {c["nodeid"].split("::")[1]: c["severity"] for c in document["checks"]}
    assert done == dict.fromkeys(BEFORE_THE_STALL, "passed")

    total = all_checks(PROJECT)
    detail = (
        f"the run was stopped by {shown} before every check finished: "
        f"3 of {total} checks done"
    )
    assert "ewsready: INCOMPLETE (passed 3)" in run.stdout
    assert f"note: {detail}" in run.stdout
    page = assert_whole_report(run)
    assert "INCOMPLETE for the calendar service" in page
    assert "T" + detail[1:] in page
    cases = ET.parse(run.run_dir / "junit.xml").getroot().iter("testcase")
    assert {case.get("name") for case in cases} == BEFORE_THE_STALL
    assert "Traceback" not in output


def test_further_signals_while_stopping_are_held(tmp_path):
    """SIGTERM again while pytest handles the first one and while the report is
    written (CI runners often signal the process and its group)."""
    run, _ = stopped_run(tmp_path, signal.SIGTERM, "-p", "tests.plugins.signal_again")

    assert run.returncode == 2, (run.stdout + run.stderr)[-3000:]
    assert run.stderr.count("SIGTERM received; already stopping") == 2
    assert run.document["verdict"] == "INCOMPLETE"
    assert run.document["stopped_by"] == "SIGTERM"
    assert len(run.document["checks"]) == 3
    assert_whole_report(run)
    assert "Traceback" not in run.stdout + run.stderr


def test_a_signal_while_a_finished_run_writes_its_report_lets_it_finish(tmp_path):
    run = run_audit(
        tmp_path,
        "--lab",
        "--lab-scenario",
        "healthy",
        "-m",
        "version",
        "-p",
        "tests.plugins.signal_again",
    )

    assert "SIGTERM received; the checks are over" in run.stderr
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert run.document["verdict"] == "PARTIAL"
    assert run.document["interrupted"] is False
    page = assert_whole_report(run)
    assert "PARTIAL for the calendar service" in page


def test_a_kill_while_writing_leaves_no_half_written_file(tmp_path):
    """SIGKILL cannot be caught: what is written by then is whole, the rest absent."""
    run = run_audit(
        tmp_path,
        "--lab",
        "--lab-scenario",
        "healthy",
        "-m",
        "version",
        "-p",
        "tests.plugins.killed_while_writing",
    )

    assert run.returncode == -signal.SIGKILL
    folder = run.run_dir
    assert folder is not None
    assert not (folder / "report.html").exists()
    assert not (folder / "junit.xml").exists()
    assert run.document["verdict"] == "PARTIAL"  # results.json is whole
    script = (folder / "remediation.ps1").read_text(encoding="utf-8-sig")
    assert script.rstrip().endswith("# Nothing to fix.")


def test_a_swallowed_interruption_still_stops_the_run(tmp_path):
    run, _ = stopped_run(
        tmp_path, signal.SIGTERM, "-p", "tests.plugins.swallow_interrupt"
    )

    assert run.returncode == 2, (run.stdout + run.stderr)[-3000:]
    assert run.document["stopped_by"] == "SIGTERM"
    assert run.document["interrupted"] is True
    # The check that swallowed it ends; none after it starts.
    assert len(run.document["checks"]) == 4
    assert_whole_report(run)


def test_the_handlers_come_and_go_with_the_audit_run():
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def ours(signum, frame):  # type: ignore[no-untyped-def]
        pass

    signal.signal(signal.SIGTERM, ours)
    signals = StopSignals()
    try:
        assert signals.install()
        with pytest.raises(RunStopped):
            signal.raise_signal(signal.SIGTERM)
        assert signals.received == "SIGTERM"
        assert stop.requested()
        signal.raise_signal(signal.SIGINT)  # already stopping: held, not raised
    finally:
        signals.restore()
        restored = signal.getsignal(signal.SIGTERM)
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    assert restored is ours
    assert not stop.requested()


def test_the_project_tests_keep_the_default_handlers():
    """`pytest tests` is not an audit run: no handler of ours is installed."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(signum)
        assert not isinstance(getattr(handler, "__self__", None), StopSignals)
