"""Basic authentication: offered by EWS on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from ewsready.facts import Blocked, HttpAnswer, Unavailable
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked
from ewsready.shellfacts import VirtualDirectoryInfo

Vdirs = Sequence[VirtualDirectoryInfo] | Unavailable | Blocked | None


def basic_on_everywhere(vdirs: Vdirs) -> bool:
    """Every EWS virtual directory the shell read has BasicAuthentication True."""
    if vdirs is None or isinstance(vdirs, Unavailable | Blocked) or not vdirs:
        return False
    return all(v.basic is True for v in vdirs)


def basic_offered(answer: HttpAnswer | Blocked, vdirs: Vdirs = None) -> Result:
    """Basic among the methods EWS offers. When the shell shows Basic on in every EWS
    virtual directory, turning it on is no fix: the finding points at what is in
    front of Exchange instead."""
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
    configured = basic_on_everywhere(vdirs)
    return [
        Finding(
            Severity.FAIL,
            f"{answer.url} does not offer Basic authentication (offered: {listed}); "
            "this is not a wrong password.",
            evidence=(f"HTTP 401 WWW-Authenticate: {listed}",)
            + (
                tuple(f"{v.identity}: BasicAuthentication True" for v in vdirs)
                if configured
                else ()
            ),
            fix="basic_stripped_in_front" if configured else "basic_not_offered",
            values={"host": urlsplit(answer.url).hostname or ""},
            subjects=(answer.url,),
        )
    ]
