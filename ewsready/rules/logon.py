"""Logon: the service account signs in to EWS with Basic authentication."""

from __future__ import annotations

from ewsready.facts import Blocked, LogonFacts
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked


def service_account_logs_on(facts: LogonFacts | Blocked) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if facts.ok:
        return []
    if facts.http_status == 401:
        return [
            Finding(
                Severity.FAIL,
                f"{facts.username} was refused at {facts.url} (HTTP 401) although "
                "Basic is offered: "
                "the password is wrong or expired, or the account is locked or "
                "disabled.",
                evidence=(f"Basic sign-in as {facts.username}: HTTP 401",),
                fix="logon_rejected",
                values={"upn": facts.username},
                subjects=(facts.username,),
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
