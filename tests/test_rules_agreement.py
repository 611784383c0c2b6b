import pytest

from ewsready.facts import Blocked, MailboxAccessFacts, MailboxRead, Unavailable
from ewsready.findings import Severity
from ewsready.rules.agreement import (
    Configured,
    configuration_matches_ews,
    delegation_configured,
    impersonation_configured,
)
from ewsready.shellfacts import (
    AccountInfo,
    ReadErrors,
    RoleAssignmentInfo,
    ScopeMembers,
)

UPN = "svc@contoso.example"
ANA, BEN = "ana@contoso.example", "ben@contoso.example"
DENIED = "ErrorImpersonateUserDenied"


def reads(access, *rows):
    return MailboxAccessFacts(
        access,
        tuple(
            MailboxRead(address, code == "NoError", code, can_write=write)
            for address, code, write in rows
        ),
        requests=len(rows),
    )


def grants(ana: bool, ben: bool):
    return {
        ANA.casefold(): Configured(ana, "in the impersonation scope (S)"),
        BEN.casefold(): Configured(ben, "outside the scope (S)"),
    }


@pytest.mark.parametrize(
    "facts, configured, severity, sentence",
    [
        (
            reads("impersonation", (ANA, "NoError", None), (BEN, DENIED, None)),
            grants(True, False),
            None,
            None,
        ),
        (
            reads("impersonation", (ANA, DENIED, None), (BEN, DENIED, None)),
            grants(True, False),
            Severity.WARN,
            f"EWS refused {UPN} on 1 mailbox that Exchange's configuration grants: "
            f"{ANA}. A recent change may not have reached EWS yet, or something the "
            "configuration read does not show (a Deny, another server's copy) "
            "overrides it.",
        ),
        (
            reads("impersonation", (ANA, "NoError", None), (BEN, "NoError", None)),
            grants(True, False),
            Severity.WARN,
            f"EWS allowed {UPN} on 1 mailbox where Exchange's configuration shows no "
            f"grant: {BEN}. Another grant reaches the account (a group, FullAccess, "
            "or an assignment the shell account cannot see), so it has more access "
            "than the configuration shows.",
        ),
        (
            # A busy server or a missing mailbox says nothing about permissions.
            reads(
                "impersonation",
                (ANA, "NoError", None),
                (BEN, "ErrorNonExistentMailbox", None),
            ),
            grants(True, True),
            None,
            None,
        ),
        (
            reads("delegate", (ANA, "NoError", False), (BEN, "NoError", True)),
            grants(True, True),
            Severity.WARN,
            f"EWS refused {UPN} on 1 mailbox that Exchange's configuration grants: "
            f"{ANA}.",
        ),
        (
            reads("impersonation", (ANA, "ErrorServerBusy", None)),
            grants(True, True),
            Severity.UNKNOWN,
            "No mailbox could be compared: EWS gave no answer about permissions for "
            "any target mailbox that the configuration covers.",
        ),
        (
            reads("impersonation", (ANA, "NoError", None)),
            "no shell is configured",
            Severity.UNKNOWN,
            "Exchange's configuration could not be compared with what EWS allowed: "
            "no shell is configured.",
        ),
    ],
)
def test_configuration_matches_ews(facts, configured, severity, sentence):
    findings = configuration_matches_ews(UPN, facts, configured)
    if severity is None:
        assert findings == []
        return
    (finding,) = findings
    assert finding.severity == severity
    assert finding.sentence.startswith(sentence)


def test_each_disagreeing_mailbox_has_its_own_evidence():
    facts = reads("impersonation", (ANA, DENIED, None), (BEN, "NoError", None))
    refused, beyond = configuration_matches_ews(UPN, facts, grants(True, False))
    assert refused.evidence == (
        f"{ANA}: configured: in the impersonation scope (S); EWS: {DENIED}",
    )
    assert beyond.evidence == (
        f"{BEN}: configured: outside the scope (S); EWS: allowed",
    )
    assert (refused.fix, beyond.fix) == (
        "configuration_not_effective",
        "access_beyond_configuration",
    )
    assert refused.values == {"upn": UPN, "mailboxes": [ANA]}


def test_blocked_access_names_the_cause():
    (finding,) = configuration_matches_ews(UPN, Blocked("no sign-in", "logon"), {})
    assert finding.severity == Severity.BLOCKED


def assignment(scope):
    return RoleAssignmentInfo(
        name="Impersonation",
        effective_user="Calendar service",
        user=None,
        assignee="Calendar service",
        assignee_type="User",
        write_scope="CustomRecipientScope" if scope else "Organization",
        custom_scope=scope,
        enabled=True,
        delegation="Regular",
    )


ACCOUNT = AccountInfo("svc", ("Calendar service", UPN))


@pytest.mark.parametrize(
    "assignments, scopes, expected",
    [
        (
            [assignment("S")],
            [ScopeMembers("S", "f", frozenset({ANA}))],
            {ANA: True, BEN: False},
        ),
        ([assignment(None)], [], {ANA: True, BEN: True}),
        ([], [], {ANA: False, BEN: False}),
    ],
)
def test_impersonation_configured(assignments, scopes, expected):
    configured = impersonation_configured((ACCOUNT, assignments, scopes), [ANA, BEN])
    assert {k: v.allowed for k, v in configured.items()} == expected


def test_impersonation_configured_unreadable():
    assert (
        impersonation_configured((ACCOUNT, Unavailable("shell down"), []), [ANA])
        == "shell down"
    )


def test_delegation_configured_reads_the_calendar_by_type():
    calendars = {ANA: "Kalender", BEN: "Calendar"}
    rights = {(ANA, "Kalender"): ("Editor",), (BEN, "Calendar"): ("Reviewer",)}
    unread = ReadErrors({"cy@contoso.example": Unavailable("database dismounted")})
    calendars["cy@contoso.example"] = "Calendar"
    configured = delegation_configured(
        (calendars, rights, unread), [ANA, BEN, "Cy@contoso.example", "x@y.example"]
    )
    assert configured == {
        ANA: Configured(True, "Editor on \\Kalender"),
        BEN: Configured(False, "Reviewer on \\Calendar"),
    }
