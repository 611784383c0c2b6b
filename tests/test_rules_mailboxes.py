import pytest

from ewsready.facts import (
    AddressFacts,
    AddressResolution,
    MailboxAccessFacts,
    MailboxRead,
)
from ewsready.findings import Severity
from ewsready.rules import mailboxes as rules

UPN = "svc-calendar@contoso.example"


def access(mode, *reads):
    return MailboxAccessFacts(mode, tuple(reads), requests=len(reads))


def ok(address, **kw):
    return MailboxRead(address, True, "NoError", **kw)


def denied(address, code, **kw):
    return MailboxRead(address, False, code, **kw)


@pytest.mark.parametrize(
    "facts, expected",
    [
        (access("impersonation", ok("a@c.example"), ok("b@c.example")), []),
        (
            access(
                "impersonation",
                ok("a@c.example"),
                denied("room@c.example", "ErrorImpersonateUserDenied"),
            ),
            [
                (
                    "impersonation_scope_gap",
                    f"The service account {UPN} cannot use 1 calendar of 2 "
                    "impersonating "
                    "(ErrorImpersonateUserDenied): room@c.example.",
                )
            ],
        ),
        (
            access(
                "impersonation",
                denied("a@c.example", "ErrorImpersonateUserDenied"),
                denied("b@c.example", "ErrorImpersonateUserDenied"),
            ),
            [
                (
                    "impersonation_missing",
                    f"The service account {UPN} cannot use 2 calendars of 2 "
                    "impersonating "
                    "(ErrorImpersonateUserDenied): a@c.example and b@c.example.",
                )
            ],
        ),
        (
            access(
                "delegate",
                ok("a@c.example", can_write=True),
                denied("b@c.example", "ErrorAccessDenied"),
            ),
            [
                (
                    "delegate_access_missing",
                    f"The service account {UPN} cannot use 1 calendar of 2 as a "
                    "delegate (ErrorAccessDenied): b@c.example.",
                )
            ],
        ),
        (
            access("delegate", ok("a@c.example", can_write=False)),
            [
                (
                    "delegate_access_missing",
                    f"The service account {UPN} cannot use 1 calendar of 1 as a "
                    "delegate (NoWriteRight): a@c.example.",
                )
            ],
        ),
        (
            access(
                "impersonation",
                denied("a@c.example", "ErrorServerBusy"),
                denied("b@c.example", "ErrorNonExistentMailbox"),
            ),
            [
                (
                    "server_busy",
                    f"The service account {UPN} cannot use 1 calendar of 2 "
                    "impersonating (ErrorServerBusy): a@c.example.",
                ),
                (
                    "mailbox_not_found",
                    f"The service account {UPN} cannot use 1 calendar of 2 "
                    "impersonating (ErrorNonExistentMailbox): b@c.example.",
                ),
            ],
        ),
    ],
)
def test_every_calendar_readable(facts, expected):
    findings = rules.every_calendar_readable(facts, UPN)
    assert [(f.fix, f.sentence) for f in findings] == expected


def test_fix_targets_exactly_the_failing_mailboxes_by_primary_address():
    facts = access(
        "delegate",
        ok("a@c.example", can_write=True),
        denied("alias@legacy.c.example", "ErrorAccessDenied", read_as="b@c.example"),
    )
    [finding] = rules.every_calendar_readable(facts, UPN)
    assert finding.values["mailboxes"] == ["b@c.example"]
    assert finding.evidence == (
        "alias@legacy.c.example (read as b@c.example): ErrorAccessDenied",
    )


def test_no_mailboxes_is_not_a_pass():
    [finding] = rules.every_calendar_readable(access("impersonation"), UPN)
    assert finding.severity == Severity.UNKNOWN


@pytest.mark.parametrize(
    "resolution, sentence",
    [
        (AddressResolution("a@c.example", True, "a@c.example", "A"), None),
        (AddressResolution("A@C.example", True, "a@c.example", "A"), None),
        (
            AddressResolution(
                "user1@legacy.c.example", True, "user1@c.example", "User One"
            ),
            "user1@legacy.c.example is a secondary address of User One; invite the "
            "user as the primary SMTP address user1@c.example.",
        ),
        (
            AddressResolution(
                "nobody@c.example", False, code="ErrorNameResolutionNoResults"
            ),
            "No mailbox has the invited address nobody@c.example.",
        ),
    ],
)
def test_invited_addresses_are_primary(resolution, sentence):
    findings = rules.invited_addresses_are_primary(AddressFacts((resolution,)))
    assert [f.sentence for f in findings] == ([sentence] if sentence else [])


def test_many_secondary_addresses_are_summarised():
    resolutions = tuple(
        AddressResolution(f"u{n}@legacy.c.example", True, f"u{n}@c.example", f"U{n}")
        for n in range(30)
    )
    findings = rules.invited_addresses_are_primary(AddressFacts(resolutions))
    assert len(findings) == rules.DETAILED_LIMIT + 1
    assert findings[-1].sentence == "5 more invited addresses are secondary addresses."


def test_a_resolution_error_is_not_a_missing_mailbox():
    facts = AddressFacts(
        (AddressResolution("a@c.example", False, code="ErrorInternalServerError"),)
    )
    [finding] = rules.invited_addresses_are_primary(facts)
    assert finding.severity == Severity.UNKNOWN
    assert finding.sentence == "1 invited address could not be resolved: a@c.example."


def test_delegate_without_effective_rights_could_not_evaluate():
    facts = access("delegate", ok("a@c.example", can_write=None))
    [finding] = rules.every_calendar_readable(facts, UPN)
    assert finding.severity == Severity.UNKNOWN
    assert "no EffectiveRights" in finding.sentence


def test_addresses_without_a_mailbox_are_not_passed_silently():
    facts = MailboxAccessFacts(
        "impersonation", (ok("a@c.example"),), 1, unresolved=("nobody@c.example",)
    )
    [finding] = rules.every_calendar_readable(facts, UPN)
    assert finding.severity == Severity.BLOCKED
    assert finding.sentence == (
        "Blocked by invited_address: nobody@c.example was not read, as no mailbox has "
        "that address"
    )


SILENT = (
    "EWS at https://mail.c.example/EWS/Exchange.asmx accepted the connection but "
    "sent no answer within 2 s"
)


def test_a_server_fault_is_named_not_blamed_on_the_account():
    facts = MailboxAccessFacts(
        "impersonation",
        (
            denied("a@c.example", "NoAnswer", message=SILENT),
            denied(
                "b@c.example",
                "NoAnswer",
                message=SILENT + " (this request was not sent)",
            ),
            ok("c@c.example"),
        ),
        requests=3,
        url="https://mail.c.example/EWS/Exchange.asmx",
    )
    [finding] = rules.every_calendar_readable(facts, UPN)
    assert finding.fix == "ews_answer_unusable"
    assert finding.sentence == (
        f"2 calendars of 3 could not be read impersonating because {SILENT}: "
        "a@c.example and b@c.example."
    )
    assert finding.values["url"] == "https://mail.c.example/EWS/Exchange.asmx"
    assert finding.values["host"] == "mail.c.example"


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("ServiceUnavailable", "service_unavailable"),
        ("ErrorServerBusy", "server_busy"),
        ("MalformedXml", "ews_answer_unusable"),
        ("ErrorItemNotFound", "mailbox_read_failed"),
    ],
)
def test_server_faults_get_their_own_fix(code, fix):
    facts = access("impersonation", denied("a@c.example", code, message="EWS at u x"))
    [finding] = rules.every_calendar_readable(facts, UPN)
    assert finding.fix == fix


def test_unresolved_addresses_say_why_when_the_server_failed():
    facts = AddressFacts(
        (AddressResolution("a@c.example", False, code="NoAnswer", message=SILENT),)
    )
    [finding] = rules.invited_addresses_are_primary(facts)
    assert finding.severity == Severity.UNKNOWN
    assert finding.sentence == (
        f"1 invited address could not be resolved because {SILENT}: a@c.example."
    )


def test_a_refused_mailbox_the_configuration_grants_is_not_granted_again():
    from ewsready.rules.agreement import Configured, configuration_matches_ews

    facts = access(
        "impersonation",
        denied("a@c.example", "ErrorImpersonateUserDenied"),
        denied("room@c.example", "ErrorImpersonateUserDenied"),
        denied("b@c.example", "ErrorImpersonateUserDenied"),
    )
    configured = {
        "a@c.example": Configured(True, "in the impersonation scope (S)"),
        "room@c.example": Configured(False, "outside the scope (S)"),
        "b@c.example": Configured(True, "in the impersonation scope (S)"),
    }

    findings = rules.every_calendar_readable(facts, UPN, configured)

    assert [(f.fix, f.sentence, f.values["mailboxes"]) for f in findings] == [
        (
            "impersonation_scope_gap",
            f"The service account {UPN} cannot use 1 calendar of 3 impersonating "
            "(ErrorImpersonateUserDenied): room@c.example.",
            ["room@c.example"],
        ),
        (
            "configuration_not_effective",
            f"The service account {UPN} cannot use 2 calendars of 3 impersonating "
            "(ErrorImpersonateUserDenied): a@c.example and b@c.example. Exchange's "
            "configuration already grants them; another grant would change nothing, "
            "so the fix is to find why EWS does not honour it.",
            ["a@c.example", "b@c.example"],
        ),
    ]
    # The same fix, with the same values, as the configured-vs-effective warning.
    [warning] = configuration_matches_ews(UPN, facts, configured)
    assert (warning.fix, warning.values) == (
        "configuration_not_effective",
        {"upn": UPN, "mailboxes": ["a@c.example", "b@c.example"]},
    )


@pytest.mark.parametrize("configured", [None, "the shell could not be reached", {}])
def test_without_the_configuration_the_grant_is_proposed(configured):
    facts = access("impersonation", denied("a@c.example", "ErrorImpersonateUserDenied"))
    [finding] = rules.every_calendar_readable(facts, UPN, configured)
    assert finding.fix == "impersonation_missing"
