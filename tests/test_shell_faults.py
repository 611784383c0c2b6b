"""Exchange's shell misbehaving, seen through the whole audit on the lab: mailboxes a
pipeline could not read, a WSMan fault in the middle of a pipeline, a Receive that is
never answered."""

from __future__ import annotations

import re

UPN = "svc-calendar@contoso.example"


def test_unread_mailboxes_are_named_with_the_reason_not_reported_as_lacking_rights(
    scenario_run,
):
    run = scenario_run("mailbox_unreadable")
    unknown = run.sentences("could not evaluate")

    assert (
        "The calendar permissions of 2 of 4 target mailboxes could not be read: "
        "ben.okafor@contoso.example (Get-MailboxFolderPermission failed: The folder "
        "permissions could not be read because the mailbox is being moved to another "
        "database) and chloe.martin@contoso.example (Get-MailboxFolderStatistics "
        "failed: The mailbox database 'DB02' that holds this mailbox is dismounted)."
    ) in unknown
    assert (
        "The Send As permissions of dieter.braun@contoso.example could not be read, "
        "because Get-ADPermission failed: Active Directory refused to return the "
        "security descriptor of this object: insufficient access rights."
    ) in unknown
    # Every right is in place: nothing is reported missing, and no fix is offered.
    assert run.sentences("failure") == []
    assert not any(
        "lacks Editor" in s or "may not send as" in s or "No calendar folder" in s
        for s in run.sentences()
    )
    assert not run.commands().strip()


# A generous bound for a whole audit of the lab (start, every check, reports) beside
# the shell's own timeout: without the hang guard, a held Receive keeps the run going
# for minutes (pypsrp retries it several times, and every later pipeline waits again).
STARTUP = 30.0
FACTOR = 4


def outcomes(run) -> dict[str, str]:
    """The severity of each check, by test name."""
    return {c["nodeid"].split("::")[-1]: c["severity"] for c in run.document["checks"]}


def report_is_whole(run) -> None:
    """The run wrote its report and judged the endpoint over EWS as usual."""
    assert run.run_dir is not None
    for name in ("report.html", "results.json", "junit.xml", "remediation.ps1"):
        assert (run.run_dir / name).is_file(), name
    checks = outcomes(run)
    for check in (
        "test_service_account_signs_in_with_basic",
        "test_service_account_reads_every_calendar",
        "test_ews_offers_basic_authentication",
    ):
        assert checks[check] == "passed", check


def test_a_wsman_fault_part_way_fails_only_that_check(scenario_run):
    run = scenario_run("winrm_fault")
    timeout = 5  # the scenario's shell_timeout

    assert run.seconds < timeout * FACTOR + STARTUP
    [sentence] = run.sentences("could not evaluate")
    assert re.fullmatch(
        r"Send As permissions \(Get-ADPermission\) could not be read: the PowerShell "
        r"session at https://ex01\.contoso\.local:\d+/PowerShell answered Get-Mailbox "
        r"\| Get-ADPermission after 2 objects with WSMan fault 2147500037: The WSMan "
        r"provider host process did not return a proper response\. A provider in the "
        r"host process may have behaved improperly\.",
        sentence,
    )
    # The two rows that did arrive are not judged as if they were the whole answer.
    assert not any("may not send as" in s for s in run.sentences())
    # The session goes on: the calendar permissions are read and pass.
    checks = outcomes(run)
    assert checks["test_service_account_is_editor_on_every_calendar"] == "passed"
    assert [n for n, s in checks.items() if s not in ("passed", "note")] == [
        "test_service_account_may_send_as_every_user"
    ]
    report_is_whole(run)


def test_a_receive_that_never_completes_costs_the_timeout_once(scenario_run):
    run = scenario_run("winrm_receive_hangs")
    timeout = 3  # the scenario's shell_timeout

    assert run.seconds < timeout * FACTOR + STARTUP
    stopped = re.compile(
        r".*: the PowerShell session at https://ex01\.contoso\.local:\d+/PowerShell "
        r"stopped answering after 3 s during Get-WebServicesVirtualDirectory\."
    )
    unknown = run.sentences("could not evaluate")
    assert len(unknown) == 7 and all(stopped.fullmatch(s) for s in unknown), unknown
    # Every check that needs the shell says so; none passes on what it never read.
    checks = outcomes(run)
    for check in (
        "test_basic_is_on_in_every_ews_virtual_directory",
        "test_exchange_publishes_the_ews_url",
        "test_exchange_serves_a_fit_certificate",
        "test_impersonation_reaches_every_target_mailbox",
        "test_every_exchange_server_is_2013_or_later",
        "test_every_exchange_server_build_is_supported",
        "test_configuration_agrees_with_what_ews_allows",
    ):
        assert checks[check] == "could not evaluate", check
    report_is_whole(run)


def test_an_entity_bomb_from_the_shell_is_refused_unparsed(scenario_run):
    run = scenario_run("winrm_entity_bomb")

    assert run.seconds < 5 * FACTOR + STARTUP
    refused = re.compile(
        r".*: the PowerShell session at https://ex01\.contoso\.local:\d+/PowerShell "
        r"answered with a document type declaration \(DTD\) to Get-Mailbox \| "
        r"Get-ADPermission after 2 objects\."
    )
    unknown = run.sentences("could not evaluate")
    assert unknown and all(refused.fullmatch(s) for s in unknown), unknown
    # The session is given up: the later shell checks say why instead of trying it.
    assert not any("may not send as" in s for s in run.sentences())
    report_is_whole(run)
