"""The report in a real headless Chromium: tenant strings stay text, fixes are visible."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(page: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (no network)."""
    if CHROMIUM is None:
        pytest.fail("Chromium is needed for this test: apt-get install chromium")
    profile = tempfile.mkdtemp(prefix="ewsready-chromium-")
    try:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-extensions",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": profile},
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_hostile_tenant_strings_render_as_text(scenario_run):
    run = scenario_run("hostile_names")
    dom = dump_dom(run.run_dir / "report.html")

    body_tag = dom.split("<body", 1)[1].split(">", 1)[0]
    assert "data-pwned" not in body_tag  # no script from the data ran
    assert '<b id="inj-org">' not in dom  # no markup from the data became an element
    assert '&lt;b id="inj-org"&gt;Contoso' in dom  # it is shown as text instead
    assert "&lt;script&gt;document.body.setAttribute" in dom
    # The fix command is in the page, quoted for PowerShell.
    assert "Get-Mailbox -Identity 'ana.lopez@contoso.example'" in dom.replace(
        "&#39;", "'"
    )


def test_hostile_addresses_in_delegate_fixes_stay_quoted_text(scenario_run):
    run = scenario_run("hostile_delegate")
    dom = dump_dom(run.run_dir / "report.html")

    body_tag = dom.split("<body", 1)[1].split(">", 1)[0]
    assert "data-pwned" not in body_tag
    text = dom.replace("&#39;", "'").replace("&amp;", "&")
    # Send As and Editor fixes over exactly the failing mailboxes, each value quoted.
    assert (
        "@('o''brien`$(Stop-Computer)@contoso.example', 'ben.okafor@contoso.example')"
        " | ForEach-Object { Add-ADPermission" in text
    )
    assert "@('o''brien`$(Stop-Computer)@contoso.example') | ForEach-Object {" in text


def test_contoso_report_shows_verdict_and_fixes(scenario_run):
    run = scenario_run("contoso")
    dom = dump_dom(run.run_dir / "report.html")
    assert "NOT READY for the calendar service" in dom
    # Eight findings; the impersonation scope, the version and the expiring
    # certificate (seen at the endpoint and in IIS) each have one fix.
    assert "What to fix: 8 findings, 5 distinct fixes" in dom
    assert dom.count('<pre class="fix">') == 5 + 8  # the summary, then each row
    assert "Why it matters:" in dom
    assert "https://learn.microsoft.com/" in dom


def test_hostile_data_keeps_junit_and_json_valid(scenario_run):
    import json
    import xml.etree.ElementTree as ElementTree

    run = scenario_run("hostile_names")
    ElementTree.parse(run.run_dir / "junit.xml")
    document = json.loads((run.run_dir / "results.json").read_text(encoding="utf-8"))
    assert document["organisation"].startswith("<b id=")


SINGULAR = {"failures": "failure", "warnings": "warning", "notes": "note"}
CATEGORY = {
    "could not evaluate": "error",
    "failure": "failed",
    "blocked": "xfailed",
    "warning": "xpassed",
    "note": "skipped",
    "passed": "passed",
}


def page_counts(dom: str) -> dict[str, dict[str, int]]:
    """What the page shows, counted four ways: its rows, its filters, ewsready's
    summary line and the run count."""
    import re
    from collections import Counter

    rows = re.findall(
        r'<tbody class="results-table-row (\w+)".*?'
        r'<td class="col-result[^"]*">([^<]*)</td>',
        dom,
        flags=re.S,
    )
    for category, label in rows:
        # Filtering by a checkbox hides exactly the rows of its outcome.
        assert CATEGORY[label.lower()] == category, (category, label)
    filters = {
        SINGULAR.get(label, label): int(count)
        for count, label in re.findall(
            r'<span class="(?:error|failed|xfailed|xpassed|skipped|passed)">'
            r"(\d+) ([^<,]+),?</span>",
            dom,
        )
    }
    summary = re.search(r"<th>Checks</th><td>([^<]*)</td>", dom).group(1)
    ran = re.search(r'<p class="run-count">(\d+) checks? ran in ', dom)
    return {
        "rows": dict(Counter(label.lower() for _, label in rows)),
        "filters": {k: v for k, v in filters.items() if v},
        "summary": {
            label: int(count)
            for label, count in (part.rsplit(": ", 1) for part in summary.split(", "))
        },
        "run count": {"checks": int(ran.group(1))} if ran else {},
    }


@pytest.mark.parametrize("name", ["contoso", "dns_nxdomain", "winrm_receive_hangs"])
def test_the_page_counts_agree_with_ewsready(scenario_run, name):
    run = scenario_run(name)
    dom = dump_dom(run.run_dir / "report.html")
    shown = page_counts(dom)

    expected = run.document["counts"]
    assert shown["rows"] == expected
    assert shown["filters"] == expected
    assert shown["summary"] == expected
    assert shown["run count"] == {"checks": len(run.document["checks"])}
    assert sum(expected.values()) == len(run.document["checks"])
    # pytest's own words for a check's outcome are gone from the page.
    for word in ("Skipped", "Failed", "Passed,", " tests took "):
        assert word not in dom.split('<table id="results-table"')[0], word
