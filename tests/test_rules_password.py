import datetime as dt

import pytest

from ewsready.facts import Blocked, Unavailable
from ewsready.findings import Severity
from ewsready.rules.password import password_not_expiring
from ewsready.shellfacts import DirectoryAccount

UPN = "svc-calendar@contoso.example"
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def account(**changes):
    base = dict(
        name=UPN,
        enabled=True,
        locked=False,
        password_never_expires=False,
        password_expired=False,
        password_last_set=NOW - dt.timedelta(days=10),
        password_expires=NOW + dt.timedelta(days=80),
        account_expires=None,
    )
    base.update(changes)
    return DirectoryAccount(**base)


def in_days(days: float) -> dt.datetime:
    return NOW + dt.timedelta(days=days)


@pytest.mark.parametrize(
    "changes, severity, sentence",
    [
        ({}, None, None),
        ({"password_expires": in_days(15)}, None, None),
        (
            {"password_expires": in_days(14)},
            Severity.WARN,
            f"The password of {UPN} expires in 14 days, on 2026-12-18 12:00 UTC "
            "(within 14 days); set a new one and enter it in the calendar service "
            "before then.",
        ),
        (
            # Real case 5: five days left is a warning with the date.
            {"password_expires": in_days(5)},
            Severity.WARN,
            f"The password of {UPN} expires in 5 days, on 2026-12-09 12:00 UTC "
            "(within 7 days); set a new one and enter it in the calendar service "
            "before then.",
        ),
        (
            {"password_expires": in_days(3)},
            Severity.WARN,
            f"The password of {UPN} expires in 3 days, on 2026-12-07 12:00 UTC "
            "(within 3 days); set a new one and enter it in the calendar service "
            "before then.",
        ),
        (
            {"password_expires": in_days(0.25)},
            Severity.WARN,
            f"The password of {UPN} expires in 6 hours, on 2026-12-04 18:00 UTC "
            "(within 1 day); set a new one and enter it in the calendar service "
            "before then.",
        ),
        (
            # Real case 5: expired yesterday is a failure.
            {"password_expires": in_days(-1), "password_expired": True},
            Severity.FAIL,
            f"The password of {UPN} expired on 2026-12-03 12:00 UTC; the calendar "
            "service can no longer sign in.",
        ),
        (
            # The computed date has passed although the flag was not read.
            {"password_expires": in_days(-0.5), "password_expired": None},
            Severity.FAIL,
            f"The password of {UPN} expired on 2026-12-04 00:00 UTC; the calendar "
            "service can no longer sign in.",
        ),
        (
            {"password_never_expires": True, "password_expires": None},
            Severity.INFO,
            f"The password of {UPN} never expires (PasswordNeverExpires is set).",
        ),
        (
            {"password_expires": None},
            Severity.UNKNOWN,
            f"The password expiry of {UPN} could not be read: Active Directory gave "
            "no msDS-UserPasswordExpiryTimeComputed.",
        ),
        (
            {"enabled": False},
            Severity.FAIL,
            f"The account {UPN} is disabled in Active Directory.",
        ),
        (
            {"locked": True},
            Severity.FAIL,
            f"The account {UPN} is locked out in Active Directory.",
        ),
        (
            {"account_expires": in_days(-2)},
            Severity.FAIL,
            f"The account {UPN} expired on 2026-12-02 12:00 UTC.",
        ),
        (
            {"account_expires": in_days(7)},
            Severity.WARN,
            f"The account {UPN} expires in 7 days, on 2026-12-11 12:00 UTC "
            "(within 7 days).",
        ),
    ],
)
def test_password_not_expiring(changes, severity, sentence):
    findings = password_not_expiring(UPN, [account(**changes)], NOW)
    if severity is None:
        assert findings == []
        return
    worst = max(findings, key=lambda f: f.severity)
    assert (worst.severity, worst.sentence) == (severity, sentence)


def test_a_warning_carries_the_date_into_the_fix():
    (finding,) = password_not_expiring(UPN, [account(password_expires=in_days(5))], NOW)
    assert finding.fix == "password_expiring"
    assert finding.values == {"upn": UPN, "expires": "2026-12-09 12:00 UTC"}
    assert "PasswordLastSet: 2026-11-24 12:00 UTC" in finding.evidence


def test_locked_and_expiring_are_both_reported():
    findings = password_not_expiring(
        UPN, [account(locked=True, password_expires=in_days(2))], NOW
    )
    assert [f.severity for f in findings] == [Severity.FAIL, Severity.WARN]


@pytest.mark.parametrize(
    "facts, sentence",
    [
        (
            Unavailable("no domain controller is configured"),
            f"The password expiry of {UPN} could not be read: no domain controller "
            "is configured.",
        ),
        (
            [],
            f"No Active Directory user has the user principal name {UPN}, so its "
            "password expiry could not be read.",
        ),
    ],
)
def test_unreadable_is_never_a_pass(facts, sentence):
    (finding,) = password_not_expiring(UPN, facts, NOW)
    assert (finding.severity, finding.sentence) == (Severity.UNKNOWN, sentence)


def test_blocked_names_the_cause():
    (finding,) = password_not_expiring(UPN, Blocked("no shell", "logon"), NOW)
    assert finding.severity == Severity.BLOCKED


def test_several_users_and_no_name_judges_none():
    (finding,) = password_not_expiring(
        "", [account(name="other@x.example"), account(enabled=False)], NOW
    )
    assert finding.severity == Severity.UNKNOWN
    assert finding.sentence.startswith("Active Directory answered with 2 users")
