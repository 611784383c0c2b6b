"""Logon: the service account signs in to EWS with Basic authentication."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from ewsready.facts import WIRE_CODES, Blocked, LogonFacts
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked
from ewsready.rules.password import Directory, refusal_cause


def fix_for_server_fault(code: str) -> str | None:
    """The catalogue entry for a failure of the server itself, or None."""
    if code == "ErrorServerBusy":
        return "server_busy"
    if code == "ServiceUnavailable":
        return "service_unavailable"
    if code in WIRE_CODES:
        return "ews_answer_unusable"
    return None


def fix_values(url: str, upn: str) -> dict[str, object]:
    return {"url": url, "host": urlsplit(url).hostname or "", "upn": upn}


def service_account_logs_on(
    facts: LogonFacts | Blocked,
    directory: Directory = None,
    now: dt.datetime | None = None,
) -> Result:
    """A refused sign-in names its cause when Active Directory was read."""
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if facts.ok:
        return []
    if facts.http_status == 401:
        cause = refusal_cause(directory, now or dt.datetime.now(dt.UTC))
        reason, fix, extra = cause or (
            "the password is wrong or expired, or the account is locked or disabled",
            "logon_rejected",
            {},
        )
        return [
            Finding(
                Severity.FAIL,
                f"{facts.username} was refused at {facts.url} (HTTP 401) although "
                f"Basic is offered: {reason}.",
                evidence=(f"Basic sign-in as {facts.username}: HTTP 401",),
                fix=fix,
                values={"upn": facts.username, **extra},
                subjects=(facts.username,),
            )
        ]
    server_fix = fix_for_server_fault(facts.error_code or "")
    if server_fix is not None and facts.error:
        return [
            Finding(
                Severity.FAIL,
                f"The sign-in of {facts.username} did not complete: {facts.error}.",
                evidence=(
                    f"first signed-in EWS request (ConvertId) as {facts.username}: "
                    f"{facts.error_code}",
                ),
                fix=server_fix,
                values=fix_values(facts.url, facts.username),
                subjects=(facts.url,),
            )
        ]
    if facts.error_code == "ErrorServerBusy":
        return [
            Finding(
                Severity.FAIL,
                f"{facts.url} kept answering ErrorServerBusy to {facts.username} "
                "beyond the wait budget.",
                evidence=(facts.error or "",),
                fix="server_busy",
                values={"upn": facts.username},
                subjects=(facts.username,),
            )
        ]
    return [
        Finding(
            Severity.FAIL,
            f"The sign-in of {facts.username} at {facts.url} did not complete: "
            f"{facts.error_code}.",
            evidence=(facts.error or "",),
            fix="logon_failed",
            values={"url": facts.url},
            subjects=(facts.username,),
        )
    ]
