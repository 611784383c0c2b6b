"""EWS URL: https, the /EWS/Exchange.asmx path, and an answer that looks like EWS."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ewsready.facts import Blocked, HttpAnswer, UrlFacts
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked

EWS_PATH = "/ews/exchange.asmx"
KNOWN_PATHS = (
    ("/owa", "an Outlook on the web (OWA) URL"),
    ("/ecp", "an Exchange admin center (ECP) URL"),
    ("/mapi", "a MAPI over HTTP URL"),
    ("/rpc", "an Outlook Anywhere (RPC over HTTP) URL"),
    ("/autodiscover", "an Autodiscover URL"),
    ("/microsoft-server-activesync", "an ActiveSync URL"),
    ("/oab", "an offline address book URL"),
    ("/powershell", "a remote PowerShell URL"),
    ("/ews/services.wsdl", "the EWS service description (WSDL), not the service"),
    ("/ews", "the EWS folder, not the service Exchange.asmx"),
)


def ews_url_for(url: str) -> str:
    """https://HOST[:port]/EWS/Exchange.asmx for the host of url."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port and parts.port != 443:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(("https", netloc, "/EWS/Exchange.asmx", "", ""))


def kind_of_path(url: str) -> str | None:
    """None for the EWS path, else what the path looks like."""
    path = urlsplit(url).path.rstrip("/").casefold()
    if path == EWS_PATH:
        return None
    for prefix, kind in KNOWN_PATHS:
        if path == prefix or path.startswith(prefix + "/"):
            return kind
    return "not the EWS path /EWS/Exchange.asmx"


def answer_kind(answer: HttpAnswer) -> str | None:
    """None when the answer is what EWS sends without credentials; else what it is."""
    location = (answer.location or "").casefold()
    content_type = (answer.content_type or "").casefold()
    if answer.status == 401 and answer.auth_schemes:
        return None
    if answer.status in (200, 500) and ("xml" in content_type):
        return None
    if answer.status in (301, 302, 303, 307, 308):
        if "/owa/auth/logon.aspx" in location or "/owa" in location:
            return (
                "an Outlook on the web sign-in redirect "
                f"(HTTP {answer.status} to {answer.location})"
            )
        return f"a redirect (HTTP {answer.status} to {answer.location})"
    if answer.status == 440:
        return "an OWA session timeout (HTTP 440)"
    if "html" in content_type:
        page = f" titled {answer.html_title!r}" if answer.html_title else ""
        form = " with a password form" if answer.has_password_form else ""
        return f"a web page{page}{form} (HTTP {answer.status}, {answer.content_type})"
    if answer.status == 404:
        return "HTTP 404 Not Found"
    return f"HTTP {answer.status} ({answer.content_type or 'no content type'})"


def _proposal(facts: UrlFacts) -> tuple[str, str]:
    """The URL to propose and how sure we are of it."""
    candidate = facts.candidate or ews_url_for(facts.given)
    if (
        facts.candidate_answer is not None
        and answer_kind(facts.candidate_answer) is None
    ):
        return candidate, f"{candidate} answers like EWS"
    if facts.candidate_answer is not None:
        return (
            candidate,
            f"{candidate} was probed too and answered "
            f"{answer_kind(facts.candidate_answer)}",
        )
    return candidate, f"{candidate} is the usual EWS URL"


def is_ews_path(facts: UrlFacts) -> Result:
    parts = urlsplit(facts.given)
    kind = kind_of_path(facts.given)
    proposed, how = _proposal(facts)
    if kind is not None:
        return [
            Finding(
                Severity.FAIL,
                f"{facts.given} is {kind}; the calendar service needs the EWS "
                f"endpoint {proposed}.",
                evidence=(f"path {parts.path or '/'}", how),
                fix="ews_url_not_ews",
                values={"proposed": proposed, "host": parts.hostname or ""},
                subjects=(facts.given,),
            )
        ]
    if parts.query or parts.fragment:
        extra = f"?{parts.query}" if parts.query else f"#{parts.fragment}"
        return [
            Finding(
                Severity.FAIL,
                f"{facts.given} carries {extra!r} after the path; give the calendar "
                f"service the plain EWS URL {proposed}.",
                evidence=(how,),
                fix="ews_url_not_ews",
                values={"proposed": proposed, "host": parts.hostname or ""},
                subjects=(facts.given,),
            )
        ]
    if parts.scheme != "https":
        return [
            Finding(
                Severity.FAIL,
                f"{facts.given} uses {parts.scheme}; the calendar service sends its "
                "password only over https.",
                evidence=(how,),
                fix="ews_url_not_https",
                values={"proposed": proposed},
                subjects=(facts.given,),
            )
        ]
    return []


def answers_like_ews(facts: UrlFacts | Blocked) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    answer = facts.given_answer
    if answer is None or answer.error:
        reason = answer.error if answer else "not probed"
        return [
            Finding(
                Severity.UNKNOWN,
                f"{facts.given} could not be asked without credentials: {reason}.",
            )
        ]
    kind = answer_kind(answer)
    if kind is None:
        return []
    proposed, how = _proposal(facts)
    parts = urlsplit(facts.given)
    return [
        Finding(
            Severity.FAIL,
            f"{facts.given} answers with {kind}, not like EWS; use {proposed}.",
            evidence=(
                f"GET {answer.url} without credentials: HTTP {answer.status}, "
                f"{answer.content_type or 'no content type'}"
                + (f", Location {answer.location}" if answer.location else ""),
                how,
            ),
            fix="ews_url_not_ews",
            values={"proposed": proposed, "host": parts.hostname or ""},
            subjects=(facts.given,),
        )
    ]
