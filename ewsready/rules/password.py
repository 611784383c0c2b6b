"""Requirement 6, from Active Directory: the service account stays usable.

The calendar service keeps the password it was given. When the password expires, or the
account is disabled, locked or expired, every calendar request fails until someone
types a new password into the calendar service, so the audit warns well before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from ewsready.facts import Blocked, Unavailable
from ewsready.rules import Finding, Result, Severity, from_blocked, plural
from ewsready.shellfacts import DirectoryAccount

Directory = Sequence[DirectoryAccount] | Unavailable | Blocked | None

# Warn when the password expires within this many days; the sentence names the
# tightest band reached, so a scheduled run escalates as the date comes closer.
WARNING_DAYS = (14, 7, 3, 1)


def when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _left(moment: dt.datetime, now: dt.datetime) -> str:
    seconds = (moment - now).total_seconds()
    if seconds < 86400:
        return f"in {plural(max(1, round(seconds / 3600)), 'hour')}"
    return f"in {plural(round(seconds / 86400), 'day')}"


def password_not_expiring(
    upn: str,
    accounts: Sequence[DirectoryAccount] | Unavailable | Blocked,
    now: dt.datetime,
) -> Result:
    """Expired, disabled, locked or expired-account fail; an expiry within 14, 7, 3 or
    1 days warns with the date; a password that never expires is noted."""
    if isinstance(accounts, Blocked):
        return from_blocked(accounts)
    if isinstance(accounts, Unavailable):
        return [
            Finding(
                Severity.UNKNOWN,
                f"The password expiry of {upn or 'the service account'} could not be "
                f"read: {accounts.reason}.",
            )
        ]
    if not accounts:
        return [
            Finding(
                Severity.UNKNOWN,
                f"No Active Directory user has the user principal name {upn}, so its "
                "password expiry could not be read.",
                fix="account_not_in_directory",
                values={"upn": upn},
            )
        ]

    if not upn and len(accounts) > 1:
        return [
            Finding(
                Severity.UNKNOWN,
                f"Active Directory answered with {len(accounts)} users and the "
                "service account is not named, so none was judged: name it "
                "(--service-account= offline, service_account.username live).",
            )
        ]
    account = accounts[0]
    # An export names the account itself; the settings may not.
    upn = upn or account.name
    values = {"upn": upn}
    evidence = _evidence(account)
    findings = []
    if account.enabled is False:
        findings.append(
            Finding(
                Severity.FAIL,
                f"The account {upn} is disabled in Active Directory.",
                evidence,
                fix="account_disabled",
                values=values,
            )
        )
    if account.locked:
        findings.append(
            Finding(
                Severity.FAIL,
                f"The account {upn} is locked out in Active Directory.",
                evidence,
                fix="account_locked",
                values=values,
            )
        )
    if account.account_expires is not None:
        findings.extend(_account_expiry(upn, account.account_expires, now, evidence))
    findings.extend(_password_expiry(upn, account, now, evidence))
    return findings


def _password_expiry(
    upn: str, account: DirectoryAccount, now: dt.datetime, evidence: tuple[str, ...]
) -> Result:
    values = {"upn": upn}
    expires = account.password_expires
    if account.password_expired or (expires is not None and expires <= now):
        on = f" on {when(expires)}" if expires is not None else ""
        return [
            Finding(
                Severity.FAIL,
                f"The password of {upn} expired{on}; the calendar service can no "
                "longer sign in.",
                evidence,
                fix="password_expired",
                values=values,
            )
        ]
    if account.password_never_expires:
        return [
            Finding(
                Severity.INFO,
                f"The password of {upn} never expires (PasswordNeverExpires is set).",
                evidence,
            )
        ]
    if expires is None:
        return [
            Finding(
                Severity.UNKNOWN,
                f"The password expiry of {upn} could not be read: Active Directory "
                "gave no msDS-UserPasswordExpiryTimeComputed.",
                evidence,
            )
        ]
    return _expiring(
        f"The password of {upn}",
        expires,
        now,
        "; set a new one and enter it in the calendar service before then",
        Finding(
            Severity.WARN,
            "",
            evidence,
            fix="password_expiring",
            values={**values, "expires": when(expires)},
        ),
    )


def _account_expiry(
    upn: str, expires: dt.datetime, now: dt.datetime, evidence: tuple[str, ...]
) -> Result:
    values = {"upn": upn, "expires": when(expires)}
    if expires <= now:
        return [
            Finding(
                Severity.FAIL,
                f"The account {upn} expired on {when(expires)}.",
                evidence,
                fix="account_expired",
                values=values,
            )
        ]
    return _expiring(
        f"The account {upn}",
        expires,
        now,
        "",
        Finding(Severity.WARN, "", evidence, fix="account_expired", values=values),
    )


def _expiring(
    what: str, expires: dt.datetime, now: dt.datetime, advice: str, finding: Finding
) -> Result:
    """The warning `finding`, with its sentence, when `expires` falls in a band."""
    band = _band(expires, now)
    if band is None:
        return []
    sentence = (
        f"{what} expires {_left(expires, now)}, on {when(expires)} "
        f"(within {plural(band, 'day')}){advice}."
    )
    return [replace(finding, sentence=sentence)]


def _band(expires: dt.datetime, now: dt.datetime) -> int | None:
    """The tightest warning band the date falls in, or None when it is further off."""
    left = expires - now
    reached = [d for d in WARNING_DAYS if left <= dt.timedelta(days=d)]
    return min(reached) if reached else None


def _evidence(account: DirectoryAccount) -> tuple[str, ...]:
    def shown(value: object) -> str:
        if value is None:
            return "(not read)"
        if isinstance(value, dt.datetime):
            return when(value)
        return str(value)

    return (
        f"Get-ADUser {account.name}",
        f"Enabled: {shown(account.enabled)}",
        f"LockedOut: {shown(account.locked)}",
        f"PasswordNeverExpires: {shown(account.password_never_expires)}",
        f"PasswordExpired: {shown(account.password_expired)}",
        f"PasswordLastSet: {shown(account.password_last_set)}",
        "password expires (msDS-UserPasswordExpiryTimeComputed): "
        + (
            shown(account.password_expires)
            if account.password_expires or not account.password_never_expires
            else "never"
        ),
        "AccountExpirationDate: "
        + (shown(account.account_expires) if account.account_expires else "never"),
    )


def refusal_cause(
    accounts: Directory,
    now: dt.datetime,
) -> tuple[str, str, dict[str, object]] | None:
    """Why Active Directory would refuse the account's sign-in, as (clause, fix id,
    the fix's values besides upn); None when the directory was not read or shows no
    reason."""
    if isinstance(accounts, Unavailable | Blocked) or not accounts:
        return None
    account = accounts[0]
    expires = account.password_expires
    if account.enabled is False:
        return "Active Directory shows the account disabled", "account_disabled", {}
    if account.locked:
        return "Active Directory shows the account locked out", "account_locked", {}
    if account.account_expires is not None and account.account_expires <= now:
        on = when(account.account_expires)
        return (
            f"Active Directory shows the account expired on {on}",
            "account_expired",
            {"expires": on},
        )
    if account.password_expired or (expires is not None and expires <= now):
        on = f" on {when(expires)}" if expires is not None else ""
        return (
            f"Active Directory shows the password expired{on}",
            "password_expired",
            {},
        )
    if account.enabled and account.locked is False:
        return (
            "Active Directory shows the account enabled, not locked and its password "
            "current, so the password given is wrong",
            "password_wrong",
            {},
        )
    return None
