import datetime as dt

import pytest

from ewsready.psobjects import PSObject
from ewsready.shellfacts import directory_accounts, from_filetime


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
