import datetime as dt

import pytest

from ewsready.facts import HttpAnswer, Unavailable
from ewsready.findings import Severity
from ewsready.psobjects import ErrorRecord
from ewsready.rules import configuration as rules
from ewsready.shellfacts import (
    AccountInfo,
    ExchangeCertificateInfo,
    ExchangeServerInfo,
    ReadErrors,
    RoleAssignmentInfo,
    ScopeMembers,
    SendAsEntry,
    VirtualDirectoryInfo,
)
from tests.factories import NOW, cert

EWS = "https://mail.contoso.example/EWS/Exchange.asmx"


def server(name, build):
    return ExchangeServerInfo(
        name,
        f"{name.lower()}.contoso.local",
        build,
        f"build {build}",
        "Mailbox",
        "Standard",
    )


def vdir(name, basic=True, external=EWS, internal=None):
    return VirtualDirectoryInfo(
        f"{name}\\EWS (Default Web Site)",
        name,
        basic,
        True,
        internal or f"https://{name.lower()}.contoso.local/EWS/Exchange.asmx",
        external,
    )


def test_unreadable_source_could_not_evaluate():
    [finding] = rules.servers_at_least_2013(Unavailable("no [shell] settings"))
    assert finding.severity == Severity.UNKNOWN
    assert (
        finding.sentence
        == "Exchange servers (Get-ExchangeServer) could not be read: no [shell] settings."
    )


@pytest.mark.parametrize(
    "servers, failing",
    [
        ([server("EX01", "15.2.2562.46")], []),
        ([server("EX01", "15.2.2562.46"), server("EX10", "14.3.123.4")], ["EX10"]),
    ],
)
def test_servers_at_least_2013(servers, failing):
    findings = rules.servers_at_least_2013(servers)
    assert [f.subjects[0] for f in findings] == failing


def test_out_of_support_names_server_product_and_date():
    [finding] = rules.servers_supported(
        [server("SOLO-E16A", "15.1.2375.7")], today=dt.date(2026, 12, 4)
    )
    assert finding.severity == Severity.WARN
    assert finding.sentence == (
        "SOLO-E16A runs Exchange 2016 CU22 (build 15.1.2375.7), out of support since 2025-10-14."
    )


def test_basic_off_on_one_of_two_servers_names_only_that_directory():
    [finding] = rules.basic_configured([vdir("EX01"), vdir("EX02", basic=False)])
    assert (
        finding.sentence
        == "Basic authentication is off on EX02\\EWS (Default Web Site)."
    )
    assert finding.values["identities"] == ["EX02\\EWS (Default Web Site)"]
    assert finding.values["servers"] == ["EX02"]


def test_configured_but_not_offered_points_at_the_proxy():
    offered = HttpAnswer(EWS, "GET", 401, auth_schemes=("Negotiate", "NTLM"))
    [finding] = rules.basic_configured_and_offered([vdir("EX01")], offered)
    assert (
        "a proxy or load balancer in front of mail.contoso.example" in finding.sentence
    )
    assert (
        rules.basic_configured_and_offered([vdir("EX01", basic=False)], offered) == []
    )


@pytest.mark.parametrize(
    "directory, severity, sentence",
    [
        (vdir("EX01"), None, None),
        (
            vdir("EX01", external="https://MAIL.contoso.example/ews/exchange.asmx"),
            None,
            None,
        ),
        (
            vdir("EX01", external=None),
            Severity.WARN,
            "EX01\\EWS (Default Web Site) has no ExternalUrl; only the InternalUrl "
            "https://ex01.contoso.local/EWS/Exchange.asmx is set.",
        ),
        (
            vdir("EX01", external="https://mail.contoso.example/owa"),
            Severity.FAIL,
            "EX01\\EWS (Default Web Site) publishes https://mail.contoso.example/owa, which is "
            "not an https /EWS/Exchange.asmx URL.",
        ),
        (
            vdir("EX01", external="https://webmail.contoso.example/EWS/Exchange.asmx"),
            Severity.WARN,
            "EX01\\EWS (Default Web Site) publishes https://webmail.contoso.example/EWS/Exchange.asmx, "
            f"but the calendar service is given {EWS}.",
        ),
    ],
)
def test_external_url_published(directory, severity, sentence):
    findings = rules.external_url_published([directory], EWS)
    assert [(f.severity, f.sentence) for f in findings] == (
        [(severity, sentence)] if sentence else []
    )


OWA = "https://mail.contoso.example/owa"


@pytest.mark.parametrize(
    "published, given, port, sentence, proposed",
    [
        # Given the OWA page: the EWS URL of its host is what Exchange should publish.
        (EWS, OWA, None, None, None),
        (
            "https://webmail.contoso.example/EWS/Exchange.asmx",
            OWA,
            None,
            "EX01\\EWS (Default Web Site) publishes "
            "https://webmail.contoso.example/EWS/Exchange.asmx, but the calendar "
            f"service is given {OWA} (whose EWS URL is {EWS}).",
            EWS,
        ),
        # The lab's port stands in for 443: shown as given, left out of the fix.
        (EWS, "https://mail.contoso.example:44089/owa", 44089, None, None),
        (
            "https://webmail.contoso.example/EWS/Exchange.asmx",
            "https://mail.contoso.example:44089/EWS/Exchange.asmx",
            44089,
            "EX01\\EWS (Default Web Site) publishes "
            "https://webmail.contoso.example/EWS/Exchange.asmx, but the calendar "
            "service is given https://mail.contoso.example:44089/EWS/Exchange.asmx.",
            EWS,
        ),
        # A real port other than 443 is part of the URL.
        (
            EWS,
            "https://mail.contoso.example:8443/EWS/Exchange.asmx",
            None,
            f"EX01\\EWS (Default Web Site) publishes {EWS}, but the calendar "
            "service is given https://mail.contoso.example:8443/EWS/Exchange.asmx.",
            "https://mail.contoso.example:8443/EWS/Exchange.asmx",
        ),
    ],
)
def test_external_url_is_compared_with_the_ews_url_given(
    published, given, port, sentence, proposed
):
    findings = rules.external_url_published(
        [vdir("EX01", external=published)], given, port
    )
    assert [(f.sentence, f.fix, f.values["proposed"]) for f in findings] == (
        [(sentence, "external_url_differs", proposed)] if sentence else []
    )


def test_missing_external_url_proposes_the_given_hosts_ews_url_only():
    [given] = rules.external_url_published([vdir("EX01", external=None)], OWA)
    assert (given.fix, given.values["proposed"]) == ("external_url_missing", EWS)

    # Without a given URL the public host is unknown: no internal name is proposed.
    [unknown] = rules.external_url_published([vdir("EX01", external=None)], None)
    assert unknown.fix == "external_url_host_unknown"
    assert unknown.values == {"identity": "EX01\\EWS (Default Web Site)"}


def certificate(services, **changes):
    info = cert(**changes)
    return ExchangeCertificateInfo(
        "EX01", info.thumbprint, services, "ThirdParty", info, b""
    )


def test_good_iis_certificate_passes():
    assert (
        rules.iis_certificate(
            [certificate(("IIS", "SMTP"))], "mail.contoso.example", now=NOW
        )
        == []
    )


def test_self_signed_iis_certificate_fails():
    bad = certificate(("IIS",), self_signed=True, self_issued=True, dns_names=("EX01",))
    [finding] = rules.iis_certificate([bad], "mail.contoso.example", now=NOW)
    assert finding.severity == Severity.FAIL
    assert finding.sentence == (
        "The certificate bound to IIS on EX01 is not fit for the calendar service: "
        "CN=mail.contoso.example (CDCDCDCD…) is self-signed and does not name "
        "mail.contoso.example."
    )


def test_an_expiring_iis_certificate_is_named_and_renewed_not_replaced():
    soon = certificate(("IIS",), not_after=NOW + dt.timedelta(days=12, hours=6))
    [finding] = rules.iis_certificate([soon], "mail.contoso.example", now=NOW)
    assert finding.severity == Severity.WARN
    assert finding.sentence == (
        "The certificate bound to IIS on EX01, CN=mail.contoso.example (thumbprint "
        f"{'CD' * 20}), expires on 2026-12-16, in 13 days."
    )
    # The endpoint check's fix for the same certificate, with the same values, so
    # remediation.ps1 makes one renewal request.
    assert finding.fix == "certificate_expiring"
    assert finding.values == {
        "thumbprint": "CD" * 20,
        "request_file": "C:\\certreq\\mail.contoso.example.req",
        "not_after": "2026-12-16 18:00 UTC",
    }


def test_an_unfit_iis_certificate_is_replaced_by_a_request_for_the_host():
    bad = certificate(("IIS",), self_signed=True, self_issued=True, dns_names=("EX01",))
    [finding] = rules.iis_certificate([bad], "mail.contoso.example", now=NOW)
    assert finding.fix == "iis_certificate_replace"
    assert finding.values == {
        "subject": "CN=mail.contoso.example",
        "names": ["mail.contoso.example", "autodiscover.contoso.example"],
        "request_file": "C:\\certreq\\mail.contoso.example.req",
    }


def test_without_the_ews_host_no_request_is_invented():
    bad = certificate(("IIS",), self_signed=True, self_issued=True, dns_names=("EX01",))
    [finding] = rules.iis_certificate([bad], None, now=NOW)
    assert (finding.fix, finding.values) == ("iis_certificate_host_unknown", {})
    [missing] = rules.iis_certificate([certificate(("SMTP",))], None, now=NOW)
    assert (missing.fix, missing.values) == ("iis_certificate_host_unknown", {})


def test_presented_certificate_that_is_not_bound_is_a_warning():
    good = certificate(("IIS",))
    findings = rules.iis_certificate(
        [good], "mail.contoso.example", ["AB" * 20], now=NOW
    )
    assert [f.severity for f in findings] == [Severity.WARN]
    assert "something in front terminates TLS" in findings[0].sentence


# --- impersonation ------------------------------------------------------------------

UPN = "svc-calendar@contoso.example"
SVC = AccountInfo(
    "contoso.local/Users/Calendar service", ("Calendar service", "svc-calendar")
)
TARGETS = ["ana@contoso.example", "room.harbour@contoso.example"]


def assignment(user="Calendar service", scope="CalendarServiceMailboxes", **changes):
    base = dict(
        name="CalendarServiceImpersonation",
        effective_user=user,
        user=None,
        assignee=user,
        assignee_type="User",
        write_scope="CustomRecipientScope" if scope else "Organization",
        custom_scope=scope,
        enabled=True,
        delegation="Regular",
    )
    base.update(changes)
    return RoleAssignmentInfo(**base)


def scope(*members, filter_text="RecipientTypeDetails -eq 'UserMailbox'"):
    return ScopeMembers("CalendarServiceMailboxes", filter_text, frozenset(members))


@pytest.mark.parametrize(
    "assignments, scopes, severity, sentence",
    [
        (
            [assignment()],
            [scope("ana@contoso.example", "room.harbour@contoso.example")],
            None,
            None,
        ),
        (
            # Real case 1: an organisation admin, but only a delegating assignment.
            [
                assignment(
                    user="Calendar service",
                    assignee="Organization Management",
                    delegation="DelegatingOrgWide",
                    scope=None,
                )
            ],
            [],
            Severity.FAIL,
            f"No enabled ApplicationImpersonation assignment reaches {UPN}, directly or "
            "through a group. What it gets through Organization Management is a "
            "delegating assignment: it may give the role to others, not use it.",
        ),
        ([], [], Severity.FAIL, None),
        ([assignment(enabled=False)], [scope(*TARGETS)], Severity.FAIL, None),
        (
            # Real case 2: the scope filters UserMailbox, the targets include a room.
            [assignment()],
            [scope("ana@contoso.example")],
            Severity.FAIL,
            f"1 of 2 target mailboxes are outside the impersonation scope of {UPN}: "
            "room.harbour@contoso.example.",
        ),
        (
            [assignment(scope=None)],
            [],
            Severity.WARN,
            f"{UPN} may impersonate every mailbox in the organisation "
            "(CalendarServiceImpersonation); a scope over the invited mailboxes is enough.",
        ),
        ([assignment(user="Other Person")], [scope(*TARGETS)], Severity.FAIL, None),
    ],
)
def test_impersonation(assignments, scopes, severity, sentence):
    findings = rules.impersonation_reaches_every_mailbox(
        "impersonation", UPN, SVC, assignments, scopes, TARGETS
    )
    if severity is None:
        assert findings == []
    else:
        assert findings[0].severity == severity
        if sentence:
            assert findings[0].sentence == sentence


def test_impersonation_is_not_needed_for_delegate_access():
    [finding] = rules.impersonation_reaches_every_mailbox(
        "delegate", UPN, SVC, [], [], TARGETS
    )
    assert finding.severity == Severity.INFO


def test_scope_gap_fix_lists_exactly_the_outside_mailboxes():
    [finding] = rules.impersonation_reaches_every_mailbox(
        "impersonation",
        UPN,
        SVC,
        [assignment()],
        [scope("ana@contoso.example")],
        TARGETS,
    )
    assert finding.values["mailboxes"] == ["room.harbour@contoso.example"]
    assert "RecipientTypeDetails -eq 'UserMailbox'" in " ".join(finding.evidence)


# --- Send As ------------------------------------------------------------------------


MAILBOXES = {
    "contoso.local/Users/Ana": "ana@contoso.example",
    "contoso.local/Users/Ben": "ben@contoso.example",
}


@pytest.mark.parametrize(
    "entries, failing",
    [
        (
            [
                SendAsEntry("contoso.local/Users/Ana", "CONTOSO\\svc", False, False),
                SendAsEntry("contoso.local/Users/Ben", "CONTOSO\\svc", False, False),
            ],
            [],
        ),
        (
            [SendAsEntry("contoso.local/Users/Ana", "CONTOSO\\svc", False, False)],
            ["ben@contoso.example"],
        ),
        (
            # Real case 4 (Editor present, Send As missing) and a Deny that wins.
            [
                SendAsEntry("contoso.local/Users/Ana", "CONTOSO\\svc", False, False),
                SendAsEntry("contoso.local/Users/Ben", "CONTOSO\\svc", False, False),
                SendAsEntry("contoso.local/Users/Ben", "CONTOSO\\svc", True, False),
            ],
            ["ben@contoso.example"],
        ),
    ],
)
def test_send_as(entries, failing):
    findings = rules.send_as_on_every_mailbox(
        "delegate",
        UPN,
        MAILBOXES,
        entries,
        ["ana@contoso.example", "ben@contoso.example"],
    )
    assert [s for f in findings for s in f.subjects] == failing


def test_send_as_unreadable_is_not_a_pass():
    [finding] = rules.send_as_on_every_mailbox(
        "delegate",
        UPN,
        MAILBOXES,
        Unavailable("not in the export"),
        ["ana@contoso.example"],
    )
    assert finding.severity == Severity.UNKNOWN


# --- calendar permissions ------------------------------------------------------------

CALENDARS = {"ana@contoso.example": "Calendar", "dieter@contoso.example": "Kalender"}


@pytest.mark.parametrize(
    "rights, failing",
    [
        # Real case 3: a de-DE mailbox whose calendar is "Kalender", with Editor: passes.
        (
            {
                ("ana@contoso.example", "Calendar"): ("Editor",),
                ("dieter@contoso.example", "Kalender"): ("Editor",),
            },
            [],
        ),
        (
            {
                ("ana@contoso.example", "Calendar"): ("Owner",),
                ("dieter@contoso.example", "Kalender"): ("PublishingEditor",),
            },
            [],
        ),
        (
            {
                ("ana@contoso.example", "Calendar"): ("Reviewer",),
                ("dieter@contoso.example", "Kalender"): ("Editor",),
            },
            ["ana@contoso.example"],
        ),
        # Editor on a folder named "Calendar" that is not this mailbox's calendar.
        (
            {
                ("ana@contoso.example", "Calendar"): ("Editor",),
                ("dieter@contoso.example", "Calendar"): ("Editor",),
            },
            ["dieter@contoso.example"],
        ),
    ],
)
def test_calendar_editor(rights, failing):
    findings = rules.calendar_editor_on_every_mailbox(
        "delegate",
        UPN,
        CALENDARS,
        rights,
        ["ana@contoso.example", "dieter@contoso.example"],
    )
    assert [s for f in findings for s in f.subjects] == failing


def test_failing_calendar_names_its_current_level():
    [finding] = rules.calendar_editor_on_every_mailbox(
        "delegate",
        UPN,
        CALENDARS,
        {("ana@contoso.example", "Calendar"): ("Reviewer",)},
        ["ana@contoso.example"],
    )
    assert (
        finding.sentence
        == f"{UPN} lacks Editor on 1 of 1 calendars: ana@contoso.example (Reviewer)."
    )
    assert finding.evidence == ("ana@contoso.example:\\Calendar: Reviewer",)


# --- mailboxes a read over all mailboxes could not read ------------------------------

BEN = "ben@contoso.example"
MOVING = Unavailable("Get-ADPermission failed: The mailbox is being moved.")


def test_send_as_names_the_mailbox_it_could_not_read_instead_of_a_missing_right():
    findings = rules.send_as_on_every_mailbox(
        "delegate",
        UPN,
        MAILBOXES,
        [SendAsEntry("contoso.local/Users/Ana", "CONTOSO\\svc", False, False)],
        ["ana@contoso.example", BEN],
        ReadErrors({BEN: MOVING}),
    )
    assert [(f.severity, f.sentence) for f in findings] == [
        (
            Severity.UNKNOWN,
            f"The Send As permissions of {BEN} could not be read, because "
            "Get-ADPermission failed: The mailbox is being moved.",
        )
    ]
    assert findings[0].subjects == (BEN,)


def test_calendar_lists_each_unread_mailbox_with_its_reason_and_judges_the_rest():
    findings = rules.calendar_editor_on_every_mailbox(
        "delegate",
        UPN,
        {"ana@contoso.example": "Calendar"},
        {("ana@contoso.example", "Calendar"): ("Reviewer",)},
        ["ana@contoso.example", BEN, "dieter@contoso.example"],
        ReadErrors(
            {
                BEN: MOVING,
                "dieter@contoso.example": Unavailable("database DB02 is offline"),
            }
        ),
    )
    assert [(f.severity, f.sentence) for f in findings] == [
        (
            Severity.UNKNOWN,
            "The calendar permissions of 2 of 3 target mailboxes could not be read: "
            f"{BEN} (Get-ADPermission failed: The mailbox is being moved) and "
            "dieter@contoso.example (database DB02 is offline).",
        ),
        (
            Severity.FAIL,
            f"{UPN} lacks Editor on 1 of 3 calendars: ana@contoso.example (Reviewer).",
        ),
    ]


@pytest.mark.parametrize(
    "granted, severity", [(("Editor",), Severity.INFO), ((), Severity.UNKNOWN)]
)
def test_errors_naming_no_mailbox_doubt_only_the_failures(granted, severity):
    stray = ErrorRecord("Active Directory timed out.", activity="Get-ADPermission")
    entries = [
        SendAsEntry("contoso.local/Users/Ana", "CONTOSO\\svc", False, False)
        for _ in granted
    ]
    findings = rules.send_as_on_every_mailbox(
        "delegate",
        UPN,
        MAILBOXES,
        entries,
        ["ana@contoso.example"],
        ReadErrors(unattributed=(stray,)),
    )
    assert findings[0].severity == severity
    assert "1 error that names no target mailbox" in findings[0].sentence
    assert (
        "Get-ADPermission failed: Active Directory timed out." in findings[0].sentence
    )


def test_no_target_mailbox_is_never_a_pass():
    scope_facts = [scope("ana@contoso.example")]
    checks = [
        rules.impersonation_reaches_every_mailbox(
            "impersonation", UPN, SVC, [assignment()], scope_facts, []
        ),
        rules.send_as_on_every_mailbox("delegate", UPN, {}, [], []),
        rules.calendar_editor_on_every_mailbox("delegate", UPN, {}, {}, []),
    ]
    for findings in checks:
        (finding,) = findings
        assert finding.severity == Severity.UNKNOWN
        assert finding.sentence.startswith("No target mailbox to check ")


def test_each_server_needs_a_fit_certificate_of_its_own():
    import dataclasses

    good = certificate(("IIS", "SMTP"))
    expired = dataclasses.replace(
        certificate(
            ("IIS",),
            not_after=NOW - dt.timedelta(days=3),
            thumbprint="EE" * 20,
        ),
        server="EX02",
    )
    [finding] = rules.iis_certificate([good, expired], "mail.contoso.example", now=NOW)
    assert finding.severity == Severity.FAIL
    assert finding.sentence.startswith(
        "The certificate bound to IIS on EX02 is not fit for the calendar service: "
    )
    assert finding.subjects == (expired.thumbprint,)
