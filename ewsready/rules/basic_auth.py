"""Basic authentication: offered by EWS on the wire."""

from __future__ import annotations

from urllib.parse import urlsplit

from ewsready.facts import Blocked, HttpAnswer
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked


def basic_offered(answer: HttpAnswer | Blocked) -> Result:
    if isinstance(answer, Blocked):
        return from_blocked(answer)
    if answer.error:
        return [
            Finding(
                Severity.UNKNOWN,
                f"{answer.url} could not be asked which sign-in methods it offers: "
                f"{answer.error}.",
            )
        ]
    offered = answer.auth_schemes
    if answer.status != 401:
        return [
            Finding(
                Severity.UNKNOWN,
                f"{answer.url} answered HTTP {answer.status} without asking for "
                "credentials, so its sign-in methods are unknown.",
                evidence=(f"Content-Type {answer.content_type}",),
            )
        ]
    if any(s.casefold() == "basic" for s in offered):
        return []
    listed = ", ".join(offered) or "none"
    return [
        Finding(
            Severity.FAIL,
            f"{answer.url} does not offer Basic authentication (offered: {listed}); "
            "this is not a wrong password.",
            evidence=(f"HTTP 401 WWW-Authenticate: {listed}",),
            fix="basic_not_offered",
            values={"host": urlsplit(answer.url).hostname or ""},
            subjects=(answer.url,),
        )
    ]
