import pytest

from ewsready.facts import Blocked, HttpAnswer, UrlFacts
from ewsready.findings import Severity
from ewsready.rules import ews_url as rules

BASE = "https://mail.contoso.example"
EWS = f"{BASE}/EWS/Exchange.asmx"
CHALLENGE = HttpAnswer(
    EWS, "GET", 401, "text/html", auth_schemes=("Negotiate", "NTLM", "Basic")
)
OWA_REDIRECT = HttpAnswer(
    f"{BASE}/owa", "GET", 302, "text/html", location=f"{BASE}/owa/auth/logon.aspx?url=x"
)


@pytest.mark.parametrize(
    "url, kind",
    [
        (EWS, None),
        (f"{BASE}/ews/exchange.asmx", None),
        (f"{BASE}/EWS/Exchange.asmx/", None),
        (f"{BASE}/owa", "an Outlook on the web (OWA) URL"),
        (f"{BASE}/owa/", "an Outlook on the web (OWA) URL"),
        (f"{BASE}/ecp/", "an Exchange admin center (ECP) URL"),
        (f"{BASE}/mapi/emsmdb", "a MAPI over HTTP URL"),
        (f"{BASE}/autodiscover/autodiscover.xml", "an Autodiscover URL"),
        (f"{BASE}/EWS/", "the EWS folder, not the service Exchange.asmx"),
        (
            f"{BASE}/EWS/Services.wsdl",
            "the EWS service description (WSDL), not the service",
        ),
        (f"{BASE}/", "not the EWS path /EWS/Exchange.asmx"),
        (f"{BASE}/owa2", "not the EWS path /EWS/Exchange.asmx"),
    ],
)
def test_kind_of_path(url, kind):
    assert rules.kind_of_path(url) == kind


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"{BASE}/owa", EWS),
        (
            "https://mail.contoso.example:8443/owa/",
            "https://mail.contoso.example:8443/EWS/Exchange.asmx",
        ),
        ("http://mail.contoso.example/EWS/Exchange.asmx", EWS),
    ],
)
def test_ews_url_for(url, expected):
    assert rules.ews_url_for(url) == expected


def test_owa_url_is_recognised_and_the_probed_ews_url_proposed():
    facts = UrlFacts(f"{BASE}/owa", OWA_REDIRECT, EWS, CHALLENGE)
    [path] = rules.is_ews_path(facts)
    assert path.sentence == (
        f"{BASE}/owa is an Outlook on the web (OWA) URL; the calendar service needs "
        f"the EWS endpoint {EWS}."
    )
    assert f"{EWS} answers like EWS" in path.evidence
    assert path.values == {"proposed": EWS, "host": "mail.contoso.example"}
    [answer] = rules.answers_like_ews(facts)
    assert answer.sentence.startswith(
        f"{BASE}/owa answers with an Outlook on the web sign-in redirect (HTTP 302"
    )


def test_plain_http_ews_url_fails():
    facts = UrlFacts("http://mail.contoso.example/EWS/Exchange.asmx", None)
    [finding] = rules.is_ews_path(facts)
    assert finding.sentence.endswith(
        "uses http; the calendar service sends its password only over https."
    )
    assert finding.fix == "ews_url_not_https"


@pytest.mark.parametrize(
    "answer, kind",
    [
        (CHALLENGE, None),
        (HttpAnswer(EWS, "GET", 200, "text/xml; charset=utf-8"), None),
        (
            HttpAnswer(
                EWS,
                "GET",
                200,
                "text/html",
                html_title="Outlook",
                has_password_form=True,
            ),
            "a web page titled 'Outlook' with a password form (HTTP 200, text/html)",
        ),
        (HttpAnswer(EWS, "GET", 404, "text/plain"), "HTTP 404 Not Found"),
        (HttpAnswer(EWS, "GET", 440, None), "an OWA session timeout (HTTP 440)"),
        (
            HttpAnswer(EWS, "GET", 302, None, location="https://login.example/"),
            "a redirect (HTTP 302 to https://login.example/)",
        ),
        (HttpAnswer(EWS, "GET", 401, "text/html"), "a web page (HTTP 401, text/html)"),
    ],
)
def test_answer_kind(answer, kind):
    assert rules.answer_kind(answer) == kind


def test_unreachable_url_is_blocked_not_failed():
    [finding] = rules.answers_like_ews(
        Blocked("mail.contoso.example does not resolve in public DNS", "reachability")
    )
    assert finding.severity == Severity.BLOCKED
    assert finding.blocked_by == "reachability"


def test_no_answer_could_not_evaluate():
    facts = UrlFacts(
        EWS, HttpAnswer(EWS, "GET", None, error="no answer within the timeout")
    )
    [finding] = rules.answers_like_ews(facts)
    assert finding.severity == Severity.UNKNOWN


def test_query_string_fails():
    facts = UrlFacts(f"{EWS}?x=1", CHALLENGE)
    [finding] = rules.is_ews_path(facts)
    assert finding.sentence == (
        f"{EWS}?x=1 carries '?x=1' after the path; give the calendar service the plain "
        f"EWS URL {EWS}."
    )
