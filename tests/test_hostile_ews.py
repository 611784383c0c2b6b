"""Hostile and broken EWS servers: the audit finishes in bounded time, says what the
server did, and reports everything else as usual.

Each ews_* scenario turns on one of the lab's hostile knobs for signed-in EWS requests
and gives the audit short limits (2 s per answer, 3 s of busy waiting). The audit runs
as a user runs it (the shared scenario_run, also used by the suite matrix), and each
test checks three things: the run ended well within a few times its limits (a hang
guard, not a benchmark), the affected check names what happened, and the report is
whole: every file written, the checks that do not need the broken answers evaluated.
"""

from __future__ import annotations

import re

import pytest

from lab.scenario import load_scenario
from tests.test_suite import marker_outcomes

URL = r"https://mail\.contoso\.example:\d+/EWS/Exchange\.asmx"
SIGN_IN = "The sign-in of svc-calendar@contoso.example did not complete: "
# Checks that need no signed-in EWS answer: they must come out as in the healthy
# scenario whatever EWS does to signed-in requests.
UNAFFECTED = (
    "reachability",
    "certificate",
    "ews_url",
    "basic_auth",
    "impersonation",
)
# Wall-clock allowance beyond the scenario's own limits: starting Python, the lab and
# the shell checks, on a loaded two-core machine.
STARTUP = 20.0

SIGN_IN_FAILURES = [
    (
        "ews_black_hole",
        rf"EWS at {URL} accepted the connection but sent no answer within 2 s\.",
    ),
    (
        "ews_slow_drip",
        rf"EWS at {URL} sent only \d+ bytes of its answer within 2 s, the time "
        r"allowed for a whole answer\.",
    ),
    (
        "ews_reset",
        rf"EWS at {URL} cut the connection after \d+ of the \d+ bytes its answer "
        r"announced\.",
    ),
    (
        "ews_html_page",
        rf"EWS at {URL} answered HTTP 500 with an HTML page titled 'Runtime Error' "
        r"instead of SOAP\.",
    ),
    (
        "ews_empty_body",
        rf"EWS at {URL} answered HTTP 200 with an empty body instead of SOAP\.",
    ),
    (
        "ews_invalid_xml",
        rf"EWS at {URL} answered with XML that is not well-formed \(Premature end "
        r"of data in tag \w+ line \d+\)\.",
    ),
    (
        "ews_huge_body",
        rf"EWS at {URL} sent an answer larger than 8 MiB; the audit stopped reading "
        r"it there\.",
    ),
    (
        "ews_entity_expansion",
        rf"EWS at {URL} answered with a document type declaration \(DTD\), which SOAP "
        r"does not allow; the answer was not parsed, so no entity in it was expanded "
        r"or fetched\.",
    ),
    (
        "ews_external_entity",
        rf"EWS at {URL} answered with a document type declaration \(DTD\), which SOAP "
        r"does not allow; the answer was not parsed, so no entity in it was expanded "
        r"or fetched\.",
    ),
    (
        "ews_http_503",
        rf"EWS at {URL} kept answering HTTP 503 Service Unavailable beyond the busy "
        r"budget of 3 s \(it last asked for a back-off of 1 s\)\.",
    ),
]


def limit(name: str) -> float:
    """How long a run of this scenario may take before it counts as a hang."""
    plan = load_scenario(name).audit
    return 3 * (plan.read_timeout + plan.busy_budget) + STARTUP


def check(run, marker: str) -> dict:
    """The marker's first check (mailbox_access has a second one, comparing the
    configuration with what EWS allowed)."""
    found = [c for c in run.document["checks"] if marker in c["markers"]]
    assert found, marker
    return found[0]


def assert_report_is_whole(run) -> None:
    assert run.run_dir is not None, run.stdout[-2000:] + run.stderr[-2000:]
    for name in ("report.html", "results.json", "junit.xml", "remediation.ps1"):
        assert (run.run_dir / name).is_file(), name
    assert "Traceback" not in run.stdout + run.stderr
    outcomes = marker_outcomes(run.document)
    for marker in UNAFFECTED:
        assert outcomes[marker] == "passed", (marker, run.stdout[-3000:])
    # The shell's view of the servers does not need EWS either.
    shell_checks = [
        c
        for c in run.document["checks"]
        if "version" in c["markers"] and "every_exchange_server" in c["nodeid"]
    ]
    assert [c["severity"] for c in shell_checks] == ["passed", "passed"]


@pytest.mark.parametrize(("name", "diagnosis"), SIGN_IN_FAILURES)
def test_broken_sign_in_answer_is_named_and_the_run_ends(
    scenario_run, name: str, diagnosis: str
) -> None:
    run = scenario_run(name)

    assert run.seconds < limit(name), f"{name} took {run.seconds:.1f} s"
    logon = check(run, "logon")
    assert logon["severity"] == "failure"
    [finding] = logon["findings"]
    assert re.fullmatch(re.escape(SIGN_IN) + diagnosis, finding["sentence"]), finding[
        "sentence"
    ]
    assert finding["commands"]
    # What depends on the sign-in is blocked by it, with the same diagnosis.
    for marker in ("mailbox_access", "invited_address"):
        [blocked] = check(run, marker)["findings"]
        assert blocked["sentence"].startswith(
            "Blocked by logon: svc-calendar@contoso.example could not sign in: EWS at "
        )
    assert_report_is_whole(run)


def test_service_unavailable_is_retried_within_the_budget(scenario_run) -> None:
    run = scenario_run("ews_http_503")
    # One sign-in attempt, then one more per Retry-After second of the 3 s budget.
    assert run.document["ews_requests"] >= 3
    assert run.seconds >= 3
    [finding] = check(run, "logon")["findings"]
    assert "Get-ServerComponentState" in finding["commands"]


def test_busy_server_is_waited_out_within_the_budget_then_reported(
    scenario_run,
) -> None:
    run = scenario_run("ews_busy_forever")

    assert run.seconds < limit("ews_busy_forever")
    # The sign-in reads the server version from the busy fault's header, so logon and
    # version pass; address lookups and calendar reads stay busy.
    assert check(run, "logon")["severity"] == "passed"
    [finding] = check(run, "mailbox_access")["findings"]
    assert re.fullmatch(
        rf"5 calendars of 5 could not be read impersonating because EWS at {URL} kept "
        r"answering ErrorServerBusy beyond the busy budget of 3 s \(it last asked for "
        r"a back-off of 1 s\): ana\.lopez@contoso\.example, .* and "
        r"room\.harbour@contoso\.example\.",
        finding["sentence"],
    ), finding["sentence"]
    assert "Set-ThrottlingPolicyAssociation" in finding["commands"]
    [unresolved] = check(run, "invited_address")["findings"]
    assert unresolved["sentence"].startswith(
        "5 invited addresses could not be resolved because EWS at "
    )
    assert_report_is_whole(run)


def test_hostile_calendar_reads_fail_only_mailbox_access(scenario_run) -> None:
    run = scenario_run("ews_black_hole_reads")

    assert run.seconds < limit("ews_black_hole_reads")
    [finding] = check(run, "mailbox_access")["findings"]
    assert re.fullmatch(
        rf"5 calendars of 5 could not be read impersonating because EWS at {URL} "
        r"accepted the connection but sent no answer within 2 s: .*\.",
        finding["sentence"],
    ), finding["sentence"]
    outcomes = marker_outcomes(run.document)
    assert outcomes["logon"] == outcomes["invited_address"] == "passed"
    assert outcomes["version"] == "passed"
    assert_report_is_whole(run)
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert "sent no answer within 2 s" in page
