import json

import pytest

from ewsready import report
from ewsready.findings import Finding, Severity

HOSTILE = "<script>alert(1)</script>\"'$(Remove-Mailbox)`\n# x"


def rendered(
    severity=Severity.FAIL, sentence=f"{HOSTILE} is a secondary address.", **kw
):
    finding = Finding(
        severity,
        sentence,
        evidence=(HOSTILE,),
        fix="address_not_primary",
        values={"invited": HOSTILE, "primary": "a@contoso.example"},
        **kw,
    )
    return report.render(finding)


def result(severity=Severity.FAIL, outcome="failed", findings=None):
    return report.CheckResult(
        "checks/x.py::t",
        "A check",
        ("invited_address",),
        outcome,
        severity,
        [rendered()] if findings is None else findings,
    )


def test_finding_html_escapes_tenant_strings():
    html = report.finding_html(rendered())
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="https://learn.microsoft.com/' in html


def test_summary_escapes_and_lists_actionable_findings():
    html = report.summary_html({"started": "now"}, [result()])
    assert "<script>" not in html
    assert "What to fix: 1 finding, 1 distinct fix" in html
    assert "NOT READY" in html


def test_fix_values_are_quoted_for_powershell():
    commands = rendered().commands
    assert "Set-Mailbox -Identity 'a@contoso.example'" in commands
    assert "[char]10" in commands  # the newline cannot start a new command


def test_remediation_comments_cannot_break_out():
    script = report.remediation_ps1(
        {"organisation": "x\nRemove-Mailbox -Identity *"}, [result()]
    )
    for line in script.splitlines():
        assert line == "" or line.startswith(
            ("#", "Get-", "@(", "$", "{", "}", "    ", "Set-", "(")
        ), line
    assert "\nRemove-Mailbox" not in script


def test_results_json_is_valid_and_complete():
    document = json.loads(report.results_json({"url": "u"}, [result()]))
    assert document["verdict"] == "NOT READY"
    assert document["ready"] is False
    assert document["checks"][0]["findings"][0]["fix"] == "address_not_primary"


PASS = result(Severity.PASS, "passed", [])
WARN = result(Severity.WARN, "passed", [])
FAIL = result()


@pytest.mark.parametrize(
    "meta, results, verdict",
    [
        ({}, [PASS, WARN], "READY"),
        ({}, [PASS, FAIL], "NOT READY"),
        ({}, [], "NO CHECKS RUN"),
        ({"deselected": 3}, [PASS], "PARTIAL"),
        ({"deselected": 3}, [FAIL], "NOT READY"),
        ({"interrupted": True}, [PASS], "INCOMPLETE"),
        ({"interrupted": True}, [FAIL], "NOT READY, INCOMPLETE"),
        ({}, [result(Severity.BLOCKED, "skipped", [])], "NOT READY"),
        ({}, [result(Severity.UNKNOWN, "failed", [])], "NOT READY"),
    ],
)
def test_verdict(meta, results, verdict):
    assert report.verdict(meta, results) == verdict
    assert report.is_ready_run(meta, results) is (verdict == "READY")


def test_a_failed_check_without_findings_could_not_evaluate():
    assert report.severity_of("failed", []) == Severity.UNKNOWN
    assert report.severity_of("skipped", []) == Severity.BLOCKED


def test_terminal_lines_print_a_shared_sentence_once():
    unreadable = result(
        Severity.UNKNOWN,
        "failed",
        [rendered(Severity.UNKNOWN, "Exchange servers could not be read: no answer.")],
    )
    blocked = result(
        Severity.BLOCKED,
        "skipped",
        [rendered(Severity.BLOCKED, "Blocked by reachability: no DNS")],
    )
    warned = result(Severity.WARN, "passed", [rendered(Severity.WARN, "Expires.")])
    lines = report.terminal_lines(
        [blocked, unreadable, warned, unreadable, blocked, PASS]
    )
    assert lines == [
        "[could not evaluate] 2 checks: Exchange servers could not be read: no answer.",
        "[warning] Expires.",
        "[blocked] 2 checks: Blocked by reachability: no DNS",
    ]


def test_what_to_fix_counts_distinct_fixes_and_shows_each_once():
    same = rendered(sentence="Another check sees the same secondary address.")
    other = report.render(
        Finding(Severity.WARN, "Exchange 2016 is out of support.", fix=None)
    )
    unread = report.render(Finding(Severity.UNKNOWN, "Servers could not be read."))
    results = [
        result(findings=[rendered()]),
        result(findings=[same]),
        result(Severity.WARN, "passed", [other]),
        result(Severity.UNKNOWN, "failed", [unread]),
    ]
    html = report.summary_html({"started": "now"}, results)
    assert "What to fix: 4 findings, 1 distinct fix" in html
    assert html.count('<pre class="fix">') == 1
    assert "the same commands as\n    for a finding above" in html


@pytest.mark.parametrize(
    "meta, detail",
    [
        (
            {"selected": 9, "deselected": 19, "left_out_offline": 19},
            "19 checks of the live endpoint are left out in an offline audit",
        ),
        (
            {"selected": 2, "deselected": 26, "left_out_offline": 19},
            "19 checks of the live endpoint are left out in an offline audit; "
            "only 2 of 9 offline checks were selected",
        ),
        ({"selected": 2, "deselected": 26}, "only 2 of 28 checks were selected"),
        ({"selected": 28, "deselected": 0}, ""),
    ],
)
def test_verdict_detail_tells_the_mode_from_a_selection(meta, detail):
    assert report.verdict_detail(meta, [PASS]) == detail
    # Either way the audit was partial.
    assert report.verdict(meta, [PASS]) == ("PARTIAL" if detail else "READY")


def _request(fix, sentence, severity=Severity.FAIL, **values):
    base = {
        "subject": "CN=mail.contoso.example",
        "names": ["mail.contoso.example"],
        "request_file": "C:\\certreq\\mail.contoso.example.req",
    }
    return report.render(
        Finding(severity, sentence, fix=fix, values={**base, **values})
    )


def test_one_certificate_request_per_request_file_in_the_script():
    endpoint = _request(
        "certificate_untrusted_root", "The chain ends in-house.", root="Contoso CA"
    )
    inside = _request("iis_certificate_replace", "The IIS certificate is not fit.")
    other = _request(
        "iis_certificate_replace",
        "Another name.",
        request_file="C:\\certreq\\mail2.contoso.example.req",
    )
    script = report.remediation_ps1(
        {}, [result(findings=[endpoint]), result(findings=[inside, other])]
    )

    # The report shows each finding's own fix; the script makes each request once.
    assert "New-ExchangeCertificate -GenerateRequest" in inside.commands
    assert script.count("New-ExchangeCertificate -GenerateRequest") == 2
    assert script.count("-Path 'C:\\certreq\\mail.contoso.example.req'") == 1
    first = script.index("# [failure] The chain ends in-house.")
    assert script[first:].startswith(
        "# [failure] The chain ends in-house.\n"
        "# [failure] The IIS certificate is not fit.\n"
        "# One fix for the 2 findings above:\n"
        "# The chain ends at Contoso CA, which is not in the public trust store.\n"
    )
    assert "# [failure] Another name.\n" in script


def test_identical_fixes_are_written_once_under_every_finding():
    one = rendered(sentence="Seen from outside.")
    two = rendered(severity=Severity.WARN, sentence="Seen from inside.")
    script = report.remediation_ps1({}, [result(findings=[one, two])])
    assert script.count(one.commands) == 1
    assert (
        "# [failure] Seen from outside.\n# [warning] Seen from inside.\n"
        "# One fix for the 2 findings above:\n" + one.commands
    ) in script


def test_a_fix_missing_a_value_is_said_in_the_page_not_raised():
    from ewsready.findings import Finding, Severity
    from ewsready.report import render

    rendered = render(
        Finding(Severity.FAIL, "x", fix="account_expired", values={"upn": "a@b.c"})
    )
    assert rendered.commands == (
        "# The fix commands could not be filled in: fix account_expired needs "
        "value(s) expires."
    )


def test_the_page_and_the_script_count_fixes_alike(scenario_run):
    run = scenario_run("cert_expired")
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    script = (run.run_dir / "remediation.ps1").read_text(encoding="utf-8-sig")
    assert "What to fix: 2 findings, 1 distinct fix" in page
    assert script.count("-GenerateRequest") == 1
