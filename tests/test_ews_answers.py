"""Pure logic behind the hostile-server findings: the SOAP screen, Retry-After, the
reading of exchangelib's error chains, the busy budget, the breaker and back-off."""

from __future__ import annotations

import email.utils
import http.client
import time

import pytest
import requests
import urllib3
from exchangelib.errors import (
    ErrorServerBusy,
    ErrorTimeoutExpired,
    TransportError,
)

from ewsready.probes import ews
from ewsready.probes.ews_answers import (
    ServiceUnavailable,
    busy_signal,
    declares_doctype,
    retry_after,
    screen_soap,
)
from ewsready.secret import Secret
from ewsready.transport import NoAnswer, diagnose, seconds_text, size_text

SOAP = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<s:Header/><s:Body/></s:Envelope>"
)
XML = "text/xml; charset=utf-8"
URL = "https://mail.contoso.example/EWS/Exchange.asmx"


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected"),
    [
        (200, XML, SOAP, None),
        (500, XML, SOAP, None),
        (200, XML, b"\xef\xbb\xbf" + SOAP, None),
        (200, XML, SOAP.replace(b"?>", b"?><!-- a comment -->"), None),
        (
            200,
            XML,
            b"",
            ("EmptyAnswer", "answered HTTP 200 with an empty body instead of SOAP"),
        ),
        (
            200,
            XML,
            b" \r\n ",
            ("EmptyAnswer", "answered HTTP 200 with an empty body instead of SOAP"),
        ),
        (
            500,
            "text/html",
            b"<html><head><title>Runtime Error</title></head></html>",
            (
                "NotSoap",
                "answered HTTP 500 with an HTML page titled 'Runtime Error' instead "
                "of SOAP",
            ),
        ),
        (
            200,
            XML,  # an HTML page that claims to be XML is still a page
            b"<!DOCTYPE html><html><body>Request rejected</body></html>",
            ("NotSoap", "answered HTTP 200 with an HTML page instead of SOAP"),
        ),
        (
            200,
            "application/json",
            b'{"error": 1}',
            (
                "NotSoap",
                "answered HTTP 200 with application/json instead of SOAP XML",
            ),
        ),
        (
            200,
            None,
            SOAP,
            ("NotSoap", "answered HTTP 200 with no content type instead of SOAP XML"),
        ),
        (
            200,
            XML,
            SOAP[: -len(b"</s:Envelope>")],
            (
                "MalformedXml",
                "answered with XML that is not well-formed (Premature end of data in "
                "tag Envelope line 1)",
            ),
        ),
        (
            200,
            XML,
            b"<Objs/>",
            (
                "NotSoap",
                "answered with XML whose root element is <Objs>, not a SOAP envelope",
            ),
        ),
    ],
)
def test_screen_soap(status, content_type, body, expected):
    assert screen_soap(status, content_type, body) == expected


DTD_REFUSAL = (
    "DocumentType",
    "answered with a document type declaration (DTD), which SOAP does not allow; the "
    "answer was not parsed, so no entity in it was expanded or fetched",
)


@pytest.mark.parametrize(
    "body",
    [
        SOAP.replace(b"?>", b'?><!DOCTYPE s:Envelope [<!ENTITY a "b">]>'),
        SOAP.replace(b"?>", b'?><!-- x --><!DOCTYPE s:Envelope SYSTEM "http://x/">'),
        b'<!DOCTYPE s:Envelope [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
        + SOAP.split(b"?>", 1)[1],
        ('\ufeff<!DOCTYPE s:Envelope [<!ENTITY a "b">]>' + SOAP.decode()[38:]).encode(
            "utf-16-le"
        ),
    ],
    ids=["internal", "after-comment", "parameter-entity", "utf-16"],
)
def test_every_document_type_is_refused_before_parsing(body):
    assert declares_doctype(body)
    assert screen_soap(200, XML, body) == DTD_REFUSAL


@pytest.mark.parametrize(
    "body",
    [
        SOAP,
        b"<s:Envelope><s:Body>&lt;!DOCTYPE html&gt;</s:Body></s:Envelope>",
        b"<!-- <!DOCTYPE x> -->" + SOAP.split(b"?>", 1)[1],
        b"<?xml version='1.0'?><!-- unterminated",
        b"no markup at all",
    ],
)
def test_doctype_only_counts_in_the_prolog(body):
    assert not declares_doctype(body)


def test_retry_after():
    now = time.time()
    in_thirty = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after("5") == 5.0
    assert retry_after(" 120 ") == 120.0
    assert retry_after(in_thirty, now) == pytest.approx(30, abs=1)
    assert retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    for value in (None, "", "soon", "-3", "1.5"):
        assert retry_after(value) is None


def raised_in(handler: BaseException, error: BaseException) -> BaseException:
    """error raised while handling handler, as exchangelib raises its own errors."""
    try:
        try:
            raise handler
        except BaseException:
            raise error  # noqa: B904 - exchangelib chains by context, not cause
    except BaseException as caught:
        return caught


def test_busy_signal_is_only_a_busy_answer():
    fault = ErrorServerBusy("busy", back_off=2.0)
    assert busy_signal(fault) is fault
    unavailable = ServiceUnavailable("HTTP 503", back_off=1.0)
    # The sign-in wraps it: TransportError("No valid version headers ...").
    wrapped = raised_in(unavailable, TransportError("No valid version headers"))
    assert busy_signal(wrapped) is unavailable

    # exchangelib relabels a timeout as ErrorServerBusy; that is not a busy server.
    timeout = raised_in(
        requests.ConnectionError("read timed out"), ErrorTimeoutExpired("Reraised")
    )
    relabelled = raised_in(timeout, ErrorServerBusy("Reraised", back_off=10))
    assert busy_signal(relabelled) is None
    assert busy_signal(TransportError("other")) is None


def test_diagnose_finds_the_fault_under_every_wrapper():
    fault = NoAnswer(URL, "accepted the connection but sent no answer within 2 s")
    protocol = urllib3.exceptions.ProtocolError("Connection aborted.", fault)
    retries = urllib3.exceptions.MaxRetryError(None, URL, protocol)
    chain = raised_in(requests.ConnectionError(retries), ErrorTimeoutExpired("x"))
    chain = raised_in(chain, ErrorServerBusy("Reraised", back_off=10))

    assert diagnose(chain) == (
        "NoAnswer",
        "accepted the connection but sent no answer within 2 s",
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            urllib3.exceptions.IncompleteRead(367, 367),
            (
                "ConnectionReset",
                "cut the connection after 367 of the 734 bytes its answer announced",
            ),
        ),
        (
            http.client.IncompleteRead(b"abc", None),
            ("ConnectionReset", "cut the connection after 3 bytes"),
        ),
        (
            http.client.IncompleteRead(b"a", None),
            ("ConnectionReset", "cut the connection after 1 byte"),
        ),
        (
            http.client.RemoteDisconnected("gone"),
            ("ConnectionReset", "closed the connection without answering"),
        ),
        (ValueError("something else"), None),
    ],
)
def test_diagnose_wire_failures(error, expected):
    wrapped = raised_in(error, ErrorTimeoutExpired("Reraised"))
    assert diagnose(wrapped) == expected


def test_busy_budget_counts_overlapping_waits_once():
    budget = ews.BusyBudget(3.0)
    assert budget.reserve(2.0)
    assert budget.reserve(2.0)  # overlaps the first wait entirely
    assert budget.spent == pytest.approx(2.0, abs=0.01)
    assert not budget.reserve(5.0)  # 2 + 3 more would pass the budget
    assert budget.reserve(2.9)
    assert not budget.reserve(10.0)


def test_breaker_opens_after_failures_in_a_row_and_closes_on_an_answer():
    breaker = ews.Breaker()
    for _ in range(ews.Breaker.THRESHOLD - 1):
        breaker.failed("NoAnswer", "EWS at u sent nothing")
        breaker.check()
    breaker.answered()
    for _ in range(ews.Breaker.THRESHOLD):
        breaker.failed("NoAnswer", "EWS at u sent nothing")
    with pytest.raises(ews.NotSent) as held:
        breaker.check()
    assert held.value.code == "NoAnswer"
    assert held.value.message == (
        "EWS at u sent nothing (this request was not sent: the last 3 requests had "
        "failed that way in a row)"
    )
    breaker.answered()
    breaker.check()


def target(budget: float = 1.0) -> ews.EwsTarget:
    return ews.EwsTarget(
        URL, "svc", Secret("x"), 2.0, 1, ews.BusyBudget(budget), ews.Breaker()
    )


def test_back_off_waits_for_busy_answers_then_succeeds(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(ews.stop, "sleep", lambda s: slept.append(s) or False)
    answers = iter([ErrorServerBusy("busy", back_off=0.25), None])

    def call() -> str:
        error = next(answers)
        if error:
            raise error
        return "ok"

    counter = ews.RequestCounter()
    assert ews.with_back_off(call, target(), counter, "test") == "ok"
    assert slept == [0.25]
    assert (counter.count, counter.busy_waits) == (2, 1)


def test_back_off_stops_at_the_budget_with_a_sentence(monkeypatch):
    monkeypatch.setattr(ews.stop, "sleep", lambda seconds: False)

    def call() -> None:
        raise ServiceUnavailable("HTTP 503", back_off=0.6)

    with pytest.raises(ews.StillBusy) as raised:
        ews.with_back_off(call, target(1.0), ews.RequestCounter(), "test")
    assert raised.value.code == "ServiceUnavailable"
    assert raised.value.what == (
        "kept answering HTTP 503 Service Unavailable beyond the busy budget of 1 s "
        "(it last asked for a back-off of 0.6 s)"
    )


def test_back_off_never_waits_for_a_relabelled_timeout(monkeypatch):
    monkeypatch.setattr(ews.stop, "sleep", pytest.fail)
    timeout = raised_in(
        NoAnswer(URL, "accepted the connection but sent no answer within 2 s"),
        ErrorTimeoutExpired("Reraised"),
    )
    relabelled = raised_in(timeout, ErrorServerBusy("Reraised", back_off=10))
    probe = target()

    def call() -> None:
        raise relabelled

    with pytest.raises(ErrorServerBusy):
        ews.with_back_off(call, probe, ews.RequestCounter(), "test")
    code, message = ews._failure(relabelled, URL)
    assert (code, message) == (
        "NoAnswer",
        f"EWS at {URL} accepted the connection but sent no answer within 2 s",
    )


@pytest.mark.parametrize(
    ("seconds", "text"), [(2, "2 s"), (0.5, "0.5 s"), (1.25, "1.2 s"), (12.6, "13 s")]
)
def test_seconds_text(seconds, text):
    assert seconds_text(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (8 * 1024 * 1024, "8 MiB"),
        (65536, "64 KiB"),
        (1536, "1.5 KiB"),
        (10, "10 bytes"),
    ],
)
def test_size_text(size, text):
    assert size_text(size) == text
