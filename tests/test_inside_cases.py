"""The real cases of Exchange's own configuration, diagnosed right over real WinRM.

Each runs the audit on a lab scenario (tests/audits.run_audit) and asserts the finding
sentence and the fix an admin would paste.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

UPN = "svc-calendar@contoso.example"


def test_1_an_organisation_admin_without_impersonation(scenario_run):
    run = scenario_run("org_admin_no_impersonation")
    assert (
        f"No enabled ApplicationImpersonation assignment reaches {UPN}, directly or "
        "through a group. What it gets through Organization Management is a "
        "delegating assignment: it may give the role to others, not use it."
    ) in run.sentences("failure")
    assert (
        "New-ManagementRoleAssignment -Name 'CalendarServiceImpersonation' "
        f"-Role ApplicationImpersonation -User '{UPN}'"
    ) in run.commands()


def test_2_a_user_mailbox_scope_leaves_the_room_out(scenario_run):
    run = scenario_run("scope_excludes_rooms")
    assert (
        f"1 of 3 target mailboxes are outside the impersonation scope of {UPN}: "
        "room.harbour@contoso.example."
    ) in run.sentences("failure")
    impersonation = [
        c for c in run.document["checks"] if "impersonation" in c["markers"]
    ]
    evidence = " ".join(e for f in impersonation[0]["findings"] for e in f["evidence"])
    assert "RecipientTypeDetails -eq 'UserMailbox'" in evidence


def test_3_kalender_with_editor_passes(scenario_run):
    # dieter.braun's calendar is "Kalender" (de-DE) and he is invited.
    run = scenario_run("send_as_missing")
    calendar = [
        c for c in run.document["checks"] if "calendar_permission" in c["markers"]
    ]
    assert [c["severity"] for c in calendar] == ["passed"]
    assert not any("not found" in s for s in run.sentences())


def test_4_editor_present_send_as_missing(scenario_run):
    run = scenario_run("send_as_missing")
    assert (
        f"{UPN} may not send as 2 of 3 target mailboxes: ben.okafor@contoso.example "
        "and dieter.braun@contoso.example."
    ) in run.sentences("failure")
    assert "-ExtendedRights 'Send-As'" in run.commands()


def _dated(sentence: str) -> dt.datetime:
    found = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d) UTC", sentence)
    assert found, sentence
    return dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)


def _started(run) -> dt.datetime:
    """When the audit ran: the scenario's run may be shared and minutes old."""
    return dt.datetime.strptime(run.document["started"], "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=dt.UTC
    )


def test_5a_password_expiring_in_five_days_is_a_warning_with_the_date(scenario_run):
    run = scenario_run("password_expiring")
    (warning,) = run.sentences("warning")
    assert warning.startswith(f"The password of {UPN} expires in 5 days, on ")
    assert "(within 7 days)" in warning
    left = _dated(warning) - _started(run)
    assert dt.timedelta(days=4, hours=23) < left <= dt.timedelta(days=5, minutes=1)
    assert "Set-ADAccountPassword -Reset" in run.commands()


def test_5b_password_expired_yesterday_is_a_failure(scenario_run):
    run = scenario_run("password_expired")
    (failure,) = [s for s in run.sentences("failure") if "password of" in s]
    assert failure.startswith(f"The password of {UPN} expired on ")
    ago = _started(run) - _dated(failure)
    assert dt.timedelta(hours=23) < ago <= dt.timedelta(days=1, minutes=1)
    # Root cause first: the refused sign-in says why, from the directory.
    (refused,) = [s for s in run.sentences("failure") if "(HTTP 401)" in s]
    assert refused.endswith(
        f"although Basic is offered: Active Directory shows the password expired on "
        f"{failure.split(' expired on ')[1].split(';')[0]}."
    )


def test_a_wrong_password_is_named_as_such_when_the_directory_is_fine(scenario_run):
    run = scenario_run("wrong_password")
    (refused,) = run.sentences("failure")
    assert refused.endswith(
        "Active Directory shows the account enabled, not locked and its password "
        "current, so the password given is wrong."
    )
    # The account is fine: the fix is the password, not an unlock.
    (finding,) = run.findings("failure")
    assert finding["fix"] == "password_wrong"
    assert finding["title"] == "The calendar service was given a wrong password"
    assert "Unlock-ADAccount" not in finding["commands"]
    assert finding["commands"].splitlines()[2:] == [
        "# Enter the account's current password in the calendar service (and in the "
        "audit's settings), then run the audit again.",
        "# Only if nobody knows the current password: set a new one (you are asked "
        "for it); anything else that signs in as this account needs it too.",
        "# Change: Get-ADUser -Filter 'UserPrincipalName -eq $upn' | "
        "Set-ADAccountPassword -Reset -NewPassword (Read-Host -AsSecureString "
        "-Prompt 'New password')",
    ]


def test_6_two_servers_the_fix_names_only_the_one_with_basic_off(scenario_run):
    run = scenario_run("one_server_basic_off")
    assert run.sentences("failure") == [
        "Basic authentication is off on EX02\\EWS (Default Web Site)."
    ]
    commands = run.commands()
    assert "'EX02\\EWS (Default Web Site)'" in commands
    assert "EX01\\EWS" not in commands


def test_configured_but_not_effective_is_said_per_mailbox(scenario_run):
    run = scenario_run("impersonation_not_effective")
    (warning,) = run.sentences("warning")
    assert warning.startswith(
        f"EWS refused {UPN} on 5 mailboxes that Exchange's configuration grants: "
    )
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    for address in ("ana.lopez", "room.harbour"):
        assert (
            f"{address}@contoso.example: configured: in the impersonation scope "
            "(CalendarServiceMailboxes); EWS: ErrorImpersonateUserDenied"
        ) in page
    assert "Restart-WebAppPool -Name &#39;MSExchangeServicesAppPool&#39;" in page


def test_basic_on_inside_but_stripped_in_front_is_not_fixed_by_turning_it_on(
    scenario_run,
):
    run = scenario_run("proxy_strips_basic")
    wire, inside = (
        f
        for f in run.findings("failure")
        if "does not offer" in f["sentence"] or "is on in every" in f["sentence"]
    )
    # Both views name what is in front of Exchange; neither turns Basic on again.
    assert wire["fix"] == inside["fix"] == "basic_stripped_in_front"
    assert wire["commands"] == (
        "# On the reverse proxy or load balancer that answers for "
        "mail.contoso.example: pass the server's WWW-Authenticate headers through "
        "(pre-authentication off for /EWS/), or enable Basic pre-authentication "
        "there.\n"
        "Test-NetConnection -ComputerName 'mail.contoso.example' -Port 443"
    )
    script = (run.run_dir / "remediation.ps1").read_text(encoding="utf-8-sig")
    assert "-BasicAuthentication $true" not in script
    assert "Restart-WebAppPool" not in script
    assert script.count("Test-NetConnection") == 1


def test_a_grant_that_is_not_effective_is_not_granted_again(scenario_run):
    run = scenario_run("impersonation_not_effective")
    [failure] = run.findings("failure")
    assert failure["sentence"].endswith(
        "Exchange's configuration already grants them; another grant would change "
        "nothing, so the fix is to find why EWS does not honour it."
    )
    assert failure["fix"] == "configuration_not_effective"
    for command in ("New-ManagementScope", "New-ManagementRoleAssignment"):
        assert command not in run.commands()
    assert (
        "Import-Module WebAdministration; Restart-WebAppPool -Name "
        "'MSExchangeServicesAppPool'" in failure["commands"]
    )


@pytest.mark.parametrize("name", ["contoso", "cert_internal_ca"])
def test_one_certificate_gets_one_request(scenario_run, name):
    run = scenario_run(name)
    script = (run.run_dir / "remediation.ps1").read_text(encoding="utf-8-sig")
    assert script.count("-GenerateRequest") == 1
    assert (
        script.count("Set-Content -Path 'C:\\certreq\\mail.contoso.example.req'") == 1
    )
    # Both findings about the certificate head that one block.
    headers = [
        line
        for line in script.splitlines()
        if line.startswith("# [") and "certificate" in line
    ]
    assert len(headers) == 2
    assert f"{headers[1]}\n# One fix for the 2 findings above:\n" in script
    assert "private key stays there" not in run.commands()


def test_an_expiring_certificate_is_said_to_expire_not_to_be_unfit(scenario_run):
    run = scenario_run("contoso")
    [inside] = [f for f in run.findings("warning") if "bound to IIS" in f["sentence"]]
    [outside] = [
        f for f in run.findings("warning") if "certificate on" in f["sentence"]
    ]
    thumbprint = outside["commands"].split("-Thumbprint '")[1][:40]
    date = outside["sentence"].split(" expires on ")[1][:10]
    assert inside["title"] == "The EWS certificate expires soon"
    assert inside["sentence"] == (
        "The certificate bound to IIS on EX01, CN=mail.contoso.example "
        f"(thumbprint {thumbprint}), expires on {date}, "
        f"in {outside['sentence'].split(', in ')[1]}"
    )
    # The same renewal as the endpoint check's; the date in its comment is plain text.
    assert inside["commands"] == outside["commands"]
    assert f"# The certificate {thumbprint} expires on {date} " in inside["commands"]


def test_a_new_certificate_request_says_why_its_key_is_exportable(scenario_run):
    run = scenario_run("cert_internal_ca")
    [inside] = [f for f in run.findings("failure") if "bound to IIS" in f["sentence"]]
    assert inside["commands"].splitlines()[1:3] == [
        "# Change: create a certificate request on this server; its key is made "
        "exportable so the issued certificate can be copied to the other servers "
        "behind the name:",
        "$request = New-ExchangeCertificate -GenerateRequest -SubjectName "
        "'CN=mail.contoso.example' -DomainName @('mail.contoso.example', "
        "'autodiscover.contoso.example') -KeySize 2048 -PrivateKeyExportable $true",
    ]


def test_an_expired_account_is_named_as_the_cause(scenario_run):
    run = scenario_run("account_expired")
    failures = run.sentences("failure")
    assert any(
        s.endswith(
            "although Basic is offered: Active Directory shows the account "
            "expired on " + s.rsplit(" expired on ", 1)[1]
        )
        for s in failures
        if "(HTTP 401)" in s
    )
    assert any(s.startswith(f"The account {UPN} expired on ") for s in failures)
    assert "Clear-ADAccountExpiration" in run.commands()
    assert "could not be filled in" not in run.commands()


def test_every_server_behind_the_name_needs_its_own_fit_certificate(scenario_run):
    run = scenario_run("one_server_cert_expired")
    (failure,) = run.sentences("failure")
    assert failure.startswith(
        "The certificate bound to IIS on EX02 is not fit for the calendar service: "
        "CN=mail.contoso.example ("
    )
    assert "EX01" not in failure
