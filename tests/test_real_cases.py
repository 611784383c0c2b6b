"""The real cases from public reports, reproduced in the lab and diagnosed right."""

from __future__ import annotations

import time
from dataclasses import replace

from ewsready.collect import Collector
from fixtures.audit import lab_settings
from lab import Lab, load_scenario

UPN = "svc-calendar@contoso.example"


def test_1_negotiate_and_ntlm_only_is_the_basic_finding_not_a_bad_password(
    scenario_run,
):
    run = scenario_run("no_basic")
    failures = run.sentences("failure")
    assert any(
        "does not offer Basic authentication (offered: Negotiate, NTLM); "
        "this is not a wrong password" in f
        for f in failures
    )
    # The inside view names the directory to fix.
    assert "Basic authentication is off on EX01\\EWS (Default Web Site)." in failures
    assert not any("password is wrong" in s for s in run.sentences())
    logon = [c for c in run.document["checks"] if "logon" in c["markers"]]
    assert logon[0]["severity"] == "blocked"
    assert (
        "Set-WebServicesVirtualDirectory -BasicAuthentication $true" in run.commands()
    )


def test_2a_internal_enterprise_root(scenario_run):
    run = scenario_run("cert_internal_ca")
    failures = run.sentences("failure")
    assert (
        "The certificate on mail.contoso.example chains to 'Contoso Enterprise Root CA', "
        "which is not a public root."
    ) in failures
    assert any(
        "has a root that is not public (RootCAType Enterprise)" in f for f in failures
    )
    assert (
        "New-ExchangeCertificate -GenerateRequest -SubjectName "
        "'CN=mail.contoso.example'" in run.commands()
    )


def test_2b_exchange_self_signed_certificate(scenario_run):
    run = scenario_run("cert_self_signed")
    assert (
        "The certificate on mail.contoso.example is self-signed (EX01); "
        "no public root vouches for it."
    ) in run.sentences("failure")


def test_3_leaf_only_is_an_incomplete_chain_not_an_untrusted_root(scenario_run):
    run = scenario_run("cert_missing_intermediate")
    assert run.sentences("failure") == [
        "mail.contoso.example sends only its own certificate; its issuer "
        "'Lab Public Issuing CA 1' is not sent."
    ]
    assert not any("not a public root" in s for s in run.sentences())
    assert "Cert:\\LocalMachine\\CA" in run.commands()


def test_4_owa_url_is_recognised_and_the_ews_url_proposed(scenario_run):
    run = scenario_run("owa_url")
    base = run.document["url"].removesuffix("/owa")
    assert (
        f"{base}/owa is an Outlook on the web (OWA) URL; the calendar service needs "
        f"the EWS endpoint {base}/EWS/Exchange.asmx."
    ) in run.sentences("failure")
    assert (
        f"# Give the calendar service this URL instead: {base}/EWS/Exchange.asmx"
        in run.commands()
    )
    proposed = f"{base}/EWS/Exchange.asmx"
    assert (
        f"note: the URL given is not EWS; signed-in checks used {proposed}"
        in run.stdout
    )
    assert run.document["audited_url"] == proposed
    # Exchange already publishes the EWS URL of that host: nothing to change there,
    # and never the OWA page as EWS's ExternalUrl.
    assert not [f for f in run.findings() if f["fix"] == "external_url_differs"]
    assert "-ExternalUrl" not in run.commands()


def test_5_exchange_2010_is_below_the_minimum(scenario_run):
    run = scenario_run("exchange_2010")
    assert sorted(run.sentences("failure")) == [
        "EX01 runs Exchange 2010 SP3 (build 14.3.123.4), below the Exchange 2013 minimum.",
        "Exchange 2010 SP3 (build 14.3.123.4) is below the Exchange 2013 minimum.",
    ]


def test_6_impersonation_denied_for_every_user(scenario_run):
    run = scenario_run("impersonation_denied")
    # The inside view agrees: no assignment reaches the account.
    assert (
        f"No enabled ApplicationImpersonation assignment reaches {UPN}, directly or "
        "through a group."
    ) in run.sentences("failure")
    [finding] = [f for f in run.findings("failure") if "impersonating" in f["sentence"]]
    assert finding["sentence"].startswith(
        f"The service account {UPN} cannot use 5 calendars of 5 impersonating "
        "(ErrorImpersonateUserDenied)"
    )
    assert (
        "New-ManagementRoleAssignment -Name 'CalendarServiceImpersonation' -Role "
        "ApplicationImpersonation "
        f"-User '{UPN}' -CustomRecipientWriteScope 'CalendarServiceMailboxes'"
    ) in finding["commands"]


def test_7_delegate_access_denied(scenario_run):
    run = scenario_run("delegate_denied")
    # Exchange's own view agrees and names the current level.
    assert (
        f"{UPN} lacks Editor on 1 of 3 calendars: ben.okafor@contoso.example (none)."
    ) in run.sentences("failure")
    [finding] = [f for f in run.findings("failure") if "as a delegate" in f["sentence"]]
    assert finding["sentence"] == (
        f"The service account {UPN} cannot use 1 calendar of 3 as a delegate "
        "(ErrorAccessDenied): ben.okafor@contoso.example."
    )
    assert "\n@('ben.okafor@contoso.example') | ForEach-Object {" in finding["commands"]
    assert (
        f"Add-MailboxFolderPermission -Identity $folder -User '{UPN}' -AccessRights "
        "Editor" in finding["commands"]
    )


def test_8_secondary_address_names_the_primary(scenario_run):
    run = scenario_run("secondary_address")
    assert run.sentences("failure") == [
        "user1@legacy.contoso.example is a secondary address of User One; invite the "
        "user "
        "as the primary SMTP address user1@contoso.example."
    ]


def test_9_server_busy_back_off_is_honoured_and_the_check_completes():
    scenario = replace(
        load_scenario("server_busy"), busy_first_calls=2, busy_back_off_ms=400
    )
    with Lab(scenario) as lab:
        collector = Collector(lab_settings(lab), [lab.public_root_bundle], "lab root")
        try:
            started = time.monotonic()
            logon = collector.logon()
            mailboxes = collector.mailboxes()
            elapsed = time.monotonic() - started
        finally:
            collector.close()
        codes = [entry.response_code for entry in lab.log if entry.operation]

    # The sign-in learns the server version from the first busy fault itself (it is
    # signed in by then); every later busy answer is waited out for its back-off.
    assert logon.ok
    assert codes[:2] == ["ErrorServerBusy", "ErrorServerBusy"]
    assert codes.count("ErrorServerBusy") == 2
    assert collector.counter.busy_waits >= 1
    assert elapsed >= 0.4 * collector.counter.busy_waits
    assert all(read.ok for read in mailboxes.reads)
    assert len(mailboxes.reads) == len(scenario.audit.invited)
