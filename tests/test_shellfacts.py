"""Shell objects to facts: which mailbox an error record is about."""

from __future__ import annotations

import datetime as dt

import pytest

from ewsready.facts import Unavailable
from ewsready.psobjects import ErrorRecord, PSObject
from ewsready.shellfacts import (
    ReadErrors,
    directory_accounts,
    errors_by_mailbox,
    from_filetime,
    mailbox_names,
)


def mailbox(name: str, address: str, *aliases: str, display: str = "") -> PSObject:
    return PSObject(
        ("Microsoft.Exchange.Data.Directory.Management.Mailbox",),
        {
            "Identity": PSObject((), {}, f"contoso.local/Users/{name}"),
            "Name": name,
            "Alias": address.partition("@")[0],
            "DisplayName": display or name,
            "DistinguishedName": f"CN={name},CN=Users,DC=contoso,DC=local",
            "PrimarySmtpAddress": address,
            "EmailAddresses": (f"SMTP:{address}", *(f"smtp:{a}" for a in aliases)),
        },
        name,
    )


ROWS = [
    mailbox("Ana López", "ana.lopez@contoso.example", "alopez@contoso.example"),
    mailbox("Ben Okafor", "ben.okafor@contoso.example", display="Reception"),
    mailbox("Ben Okafor2", "ben2@contoso.example", display="Reception"),
]
NAMES = mailbox_names(ROWS)
ANA = "ana.lopez@contoso.example"


def test_every_name_of_a_mailbox_leads_to_its_address():
    for name in (
        "contoso.local/Users/Ana López",
        "CONTOSO.LOCAL/USERS/ANA LÓPEZ",
        "ana.lopez",
        "cn=ana lópez,cn=users,dc=contoso,dc=local",
        "alopez@contoso.example",
        ANA,
    ):
        assert NAMES[name.casefold()] == ANA, name


def test_a_name_two_mailboxes_share_names_neither():
    assert "reception" not in NAMES


@pytest.mark.parametrize(
    "target, mailbox",
    [
        ("contoso.local/Users/Ana López", ANA),  # a piped mailbox's identity
        ("contoso.local/Users/Ana López\\Calendar", ANA),  # folder statistics
        ("ana.lopez@contoso.example:\\Calendar", ANA),  # folder permission
        ("alopez@contoso.example:\\Calendar", ANA),  # by an alias
        ("nobody@contoso.example", "nobody@contoso.example"),  # an address as it is
        ("Reception", None),  # ambiguous: not pinned on either
        ("EX02", None),
        (None, None),
    ],
)
def test_an_error_is_tied_to_the_mailbox_it_names(target, mailbox):
    error = ErrorRecord("it failed", target=target, activity="Get-ADPermission")
    found = errors_by_mailbox([error], NAMES)
    if mailbox is None:
        assert found.mailboxes == {} and found.unattributed == (error,)
    else:
        assert found.mailboxes == {
            mailbox: Unavailable("Get-ADPermission failed: it failed")
        }
        assert found.unattributed == ()


def test_answers_are_not_failures_and_the_first_reason_stays():
    errors = [
        ErrorRecord(
            "There is no existing permission entry found for user: svc.",
            target=f"{ANA}:\\Calendar",
            reason="UserNotFoundInPermissionEntryException",
        ),
        ErrorRecord("first", target=ANA, activity="Get-MailboxFolderStatistics"),
        ErrorRecord("second", target=ANA, activity="Get-MailboxFolderStatistics"),
    ]
    found = errors_by_mailbox(
        errors, NAMES, frozenset({"UserNotFoundInPermissionEntryException"})
    )
    assert found.mailboxes == {
        ANA: Unavailable("Get-MailboxFolderStatistics failed: first")
    }
    assert not found.unattributed


def test_merged_read_errors_keep_the_first_reason():
    first = ReadErrors({ANA: Unavailable("one")}, (ErrorRecord("x"),))
    second = ReadErrors(
        {ANA: Unavailable("two"), "b@x": Unavailable("three")}, (ErrorRecord("y"),)
    )
    merged = first.merged(second)
    assert merged.mailboxes == {ANA: Unavailable("one"), "b@x": Unavailable("three")}
    assert [e.message for e in merged.unattributed] == ["x", "y"]
    assert not ReadErrors() and merged


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, None),  # never
        (0x7FFFFFFFFFFFFFFF, None),  # never
        (-1, None),
        ("134095104000000000", None),  # text is not a FILETIME
        (True, None),
        (116444736000000000, dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
        (134095104000000000, dt.datetime(2025, 12, 6, 16, 0, tzinfo=dt.UTC)),
    ],
)
def test_from_filetime(value, expected):
    assert from_filetime(value) == expected


def test_directory_accounts_reads_get_aduser():
    user = PSObject(
        ("Microsoft.ActiveDirectory.Management.ADUser",),
        {
            "UserPrincipalName": "svc@contoso.example",
            "Enabled": True,
            "LockedOut": "False",
            "PasswordNeverExpires": False,
            "PasswordExpired": False,
            "PasswordLastSet": dt.datetime(2026, 11, 1, 8, 0),
            "msDS-UserPasswordExpiryTimeComputed": 116444736000000000,
            "AccountExpirationDate": None,
        },
    )
    (account,) = directory_accounts([user])
    assert account.name == "svc@contoso.example"
    assert (account.enabled, account.locked) == (True, False)
    # A time without a zone is read as UTC.
    assert account.password_last_set == dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
    assert account.password_expires == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert account.account_expires is None


def test_directory_accounts_leaves_absent_properties_unread():
    (account,) = directory_accounts([PSObject((), {"SamAccountName": "svc"})])
    assert account.name == "svc"
    assert account.enabled is None and account.password_expires is None


def test_dates_arrive_as_text_over_the_live_shell():
    # pypsrp hands <DT> values over as their ISO text.
    user = PSObject(
        (),
        {
            "UserPrincipalName": "svc@contoso.example",
            "PasswordLastSet": "2026-11-01T08:00:00.1234567+01:00",
            "AccountExpirationDate": "2026-12-06T19:20:20Z",
        },
    )
    (account,) = directory_accounts([user])
    assert account.password_last_set == dt.datetime(
        2026, 11, 1, 7, 0, 0, 123456, tzinfo=dt.UTC
    )
    assert account.account_expires == dt.datetime(
        2026, 12, 6, 19, 20, 20, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "not a date"])
def test_dates_out_of_range_or_unreadable_are_not_read(value):
    (account,) = directory_accounts([PSObject((), {"PasswordLastSet": value})])
    assert account.password_last_set is None
