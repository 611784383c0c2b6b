"""The protections behind the hostile-server findings, one at a time, in process.

Each test starts the lab with one hostile knob, lets the audit's own collector (or
its transport) talk to it over loopback, and asserts the protection: a deadline for a
whole answer, a size cap that bounds memory, a shared budget for busy waits, a breaker
that stops sending to a server that has stopped answering, and entities that are
never fetched.
"""

from __future__ import annotations

import gzip
import io
import re
import socket
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests
import urllib3

from ewsready.collect import Collector
from ewsready.probes import ews
from ewsready.probes.ews_answers import EwsAdapter
from ewsready.rules import ews_url as url_rules
from ewsready.transport import (
    MAX_ANSWER_BYTES,
    AnswerBudget,
    AnswerTooLarge,
    AnswerTooSlow,
    LimitedAdapter,
    NoAnswer,
    answer_fault,
)
from fixtures.audit import lab_settings
from lab import Lab, load_scenario

HEALTHY = load_scenario("healthy")
SERVICE = HEALTHY.service_upn


def short_limits(scenario, read_timeout: float = 1.0, busy_budget: float = 2.0):
    plan = replace(
        scenario.audit,
        connect_timeout=2.0,
        read_timeout=read_timeout,
        busy_budget=busy_budget,
    )
    return replace(scenario, audit=plan)


@pytest.fixture
def lab_with() -> Iterator:
    """Start a lab on healthy with changes; yields (lab, collector) pairs."""
    started: list[tuple[Lab, Collector]] = []

    def start(read_timeout: float = 1.0, busy_budget: float = 2.0, **changes):
        scenario = short_limits(replace(HEALTHY, **changes), read_timeout, busy_budget)
        lab = Lab(scenario)
        lab.start()
        collector = Collector(lab_settings(lab), [lab.public_root_bundle], "lab root")
        started.append((lab, collector))
        return lab, collector

    yield start
    for lab, collector in started:
        collector.close()
        lab.stop()


def signed_in_post(lab: Lab, adapter: requests.adapters.HTTPAdapter, **kwargs):
    """One signed-in POST to the lab's EWS URL through the given adapter (the route
    to the lab must be set, e.g. by collector.reachability())."""
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", adapter)
    return session.post(
        lab.url,
        data=b"<x/>",
        auth=(SERVICE, lab.password),
        headers={"Content-Type": "text/xml"},
        **kwargs,
    )


# --- a deadline for the whole answer --------------------------------------------------


def test_slow_drip_is_cut_at_the_deadline_not_left_to_the_read_timeout(lab_with):
    lab, collector = lab_with(hostile="slow_drip")
    collector.reachability()

    started = time.monotonic()
    with pytest.raises(requests.ConnectionError) as raised:
        signed_in_post(lab, LimitedAdapter(), timeout=1.5)
    elapsed = time.monotonic() - started

    # Each byte arrives well within 1.5 s, so only a deadline ends this.
    assert 1.4 < elapsed < 6
    fault = answer_fault(raised.value)
    assert isinstance(fault, AnswerTooSlow)
    assert fault.what.startswith("sent only ")
    assert fault.what.endswith(
        "bytes of its answer within 1.5 s, the time allowed for a whole answer"
    )


def test_streamed_answer_keeps_its_limits(lab_with):
    """A caller that streams reads the body after send returns; the cap still holds."""
    lab, collector = lab_with(hostile="huge_body", hostile_body_mb=50, read_timeout=20)
    collector.reachability()
    response = signed_in_post(lab, LimitedAdapter(), timeout=20, stream=True)

    read = 0
    with pytest.raises(urllib3.exceptions.ProtocolError) as raised:
        for chunk in response.raw.stream(65536):
            read += len(chunk)
    assert read <= MAX_ANSWER_BYTES
    assert isinstance(answer_fault(raised.value), AnswerTooLarge)


def test_black_hole_is_no_answer_within_the_read_timeout(lab_with):
    lab, collector = lab_with(hostile="black_hole")
    collector.reachability()

    started = time.monotonic()
    with pytest.raises(requests.ConnectionError) as raised:
        signed_in_post(lab, LimitedAdapter(), timeout=1.0)

    assert time.monotonic() - started < 5
    fault = answer_fault(raised.value)
    assert isinstance(fault, NoAnswer)
    assert fault.what == "accepted the connection but sent no answer within 1 s"


def test_anonymous_probe_of_a_dripping_url_ends_and_says_why(lab_with):
    lab, collector = lab_with(hostile="slow_drip", hostile_anonymous=True)

    started = time.monotonic()
    facts = collector.url()
    elapsed = time.monotonic() - started

    assert elapsed < 6
    assert facts.candidate is None  # no answer, so no other URL is proposed
    assert facts.given_answer.error.startswith("sent only ")
    [finding] = url_rules.answers_like_ews(facts)
    assert finding.sentence.startswith(
        f"{lab.url} could not be asked without credentials: sent only "
    )


def test_anonymous_probe_of_a_url_that_cuts_its_answer_says_so(lab_with):
    """The probe reads the body itself (streamed); a cut there is a fact too."""
    lab, collector = lab_with(hostile="reset_mid_body", hostile_anonymous=True)

    facts = collector.url()

    assert re.fullmatch(
        r"cut the connection after \d+ of the \d+ bytes its answer announced",
        facts.given_answer.error,
    ), facts.given_answer
    assert facts.given_answer.status is None


# --- a cap on the size of an answer ---------------------------------------------------


def test_huge_answer_is_cut_at_the_cap_and_memory_stays_bounded(lab_with):
    lab, collector = lab_with(hostile="huge_body", hostile_body_mb=50, read_timeout=20)
    collector.reachability()

    tracemalloc.start()
    try:
        with pytest.raises(requests.RequestException) as raised:
            signed_in_post(lab, EwsAdapter(), timeout=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    fault = answer_fault(raised.value)
    assert isinstance(fault, AnswerTooLarge)
    assert fault.what == (
        "sent an answer larger than 8 MiB; the audit stopped reading it there"
    )
    # The lab streams its 50 MB; the client holds at most about one cap's worth.
    assert peak < 3 * MAX_ANSWER_BYTES < 50 * 1024 * 1024, peak


def test_decompressed_size_is_capped_too():
    """A small gzip body that inflates past the cap is refused while inflating."""
    inflated = 4 * 1024 * 1024
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(gzip.compress(b"\0" * inflated)),
        headers={"Content-Encoding": "gzip"},
        status=200,
        preload_content=False,
    )
    response = requests.Response()
    response.raw = raw
    response.status_code = 200
    budget = AnswerBudget("https://ews.example/EWS/Exchange.asmx", 0.0, None, 1 << 20)

    with pytest.raises(AnswerTooLarge, match="larger than 1 MiB"):
        LimitedAdapter._read_body(response, budget)


# --- busy servers ---------------------------------------------------------------------


def test_a_passing_503_is_waited_out_for_its_retry_after(lab_with):
    lab, collector = lab_with(
        hostile="http_503", hostile_requests=2, busy_back_off_ms=1000, busy_budget=5
    )

    started = time.monotonic()
    logon = collector.logon()
    elapsed = time.monotonic() - started

    assert logon.ok, logon
    assert collector.counter.busy_waits == 2
    assert elapsed >= 2  # Retry-After: 1, twice
    assert [r.status for r in lab.log if r.operation][:3] == [503, 503, 200]


def test_busy_budget_is_one_for_the_whole_run_not_one_per_mailbox(lab_with):
    """Twenty mailboxes, four workers, a server busy forever with a 0.5 s back-off:
    waits that overlap count once, so the run waits about the budget in all."""
    scenario = HEALTHY.with_generated_users(20, "contoso.example")
    lab, collector = lab_with(
        busy_budget=1.0,
        busy_first_calls=1_000_000,
        busy_back_off_ms=500,
        mailboxes=scenario.mailboxes,
        audit=scenario.audit,
    )
    collector = Collector(
        replace(collector.settings, workers=4), [lab.public_root_bundle], "lab root"
    )
    try:
        assert collector.logon().ok
        started = time.monotonic()
        addresses = collector.addresses()
        elapsed = time.monotonic() - started
    finally:
        collector.close()

    assert collector.busy.spent <= 1.0
    # Per-call budgets would wait 25 x 1 s / 4 workers; the shared one about 1 s.
    assert elapsed < 4.5, elapsed
    assert {r.code for r in addresses.resolutions} == {"ErrorServerBusy"}
    assert "beyond the busy budget of 1 s" in addresses.resolutions[-1].message


# --- a server that has stopped answering ----------------------------------------------


def test_breaker_stops_sending_after_failures_in_a_row(lab_with):
    scenario = HEALTHY.with_generated_users(12, "contoso.example")
    invited = len(scenario.audit.invited)
    lab, collector = lab_with(
        hostile="black_hole",
        hostile_after=1 + invited,  # the sign-in and every address lookup answer
        mailboxes=scenario.mailboxes,
        audit=scenario.audit,
    )
    collector = Collector(
        replace(collector.settings, workers=2), [lab.public_root_bundle], "lab root"
    )
    try:
        assert collector.logon().ok
        assert all(r.found for r in collector.addresses().resolutions)
        started = time.monotonic()
        facts = collector.mailboxes()
        elapsed = time.monotonic() - started
    finally:
        collector.close()

    black_holed = [r for r in lab.log if r.hostile == "black_hole"]
    # Two waves of two requests trip the breaker; the other mailboxes are not sent,
    # instead of 17 mailboxes / 2 workers x 1 s.
    assert len(black_holed) <= ews.Breaker.THRESHOLD + 1
    assert elapsed < 6, elapsed
    assert len(facts.reads) == invited
    assert {r.code for r in facts.reads} == {"NoAnswer"}
    held_back = [r for r in facts.reads if "this request was not sent" in r.message]
    assert len(held_back) == invited - len(black_holed)


# --- entities -------------------------------------------------------------------------


@pytest.fixture
def watched_url() -> Iterator[tuple[str, socket.socket]]:
    """An http URL on loopback whose listener must never see a connection."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/ent.dtd", listener


def test_external_entities_are_never_fetched_or_read(lab_with, watched_url):
    url, listener = watched_url
    lab, collector = lab_with(hostile="external_entity", hostile_entity_url=url)

    logon = collector.logon()

    assert logon.error_code == "DocumentType"
    assert [r.hostile for r in lab.log if r.operation] == ["external_entity"]
    with pytest.raises(BlockingIOError):
        listener.accept()
    with open("/etc/passwd", encoding="utf-8") as passwd:
        first_line = passwd.readline().strip()
    assert first_line not in repr(logon)


def test_entity_bomb_costs_neither_time_nor_memory(lab_with):
    lab, collector = lab_with(hostile="entity_expansion")

    tracemalloc.start()
    try:
        started = time.monotonic()
        logon = collector.logon()
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert logon.error_code == "DocumentType"
    assert elapsed < 5
    assert peak < 20 * 1024 * 1024  # a billion 'lol's would be 3 GB


def test_unusable_answers_never_reach_exchangelib(lab_with, monkeypatch):
    """An invalid answer is refused by the screen, before exchangelib's forgiving
    parser (recover=True) could make a partial tree of it."""
    import exchangelib.services.common
    import exchangelib.util

    lab, collector = lab_with(hostile="invalid_xml")
    parsed = []
    original = exchangelib.util.to_xml
    monkeypatch.setattr(
        exchangelib.services.common,
        "to_xml",
        lambda content: parsed.append(1) or original(content),
    )

    logon = collector.logon()

    assert logon.error_code == "MalformedXml"
    assert parsed == []


def test_status_answers_without_soap_are_left_to_exchangelib():
    """401, 302 and 503 carry no SOAP: the screen leaves them alone."""
    adapter = EwsAdapter()
    for status in (302, 401, 503):
        response = requests.Response()
        response.status_code = status
        response._content = b"<html><title>x</title></html>"
        response.headers["Content-Type"] = "text/html"
        request = requests.Request("POST", "https://ews.example/EWS/Exchange.asmx")
        adapter.screen(request.prepare(), response)  # no exception


def test_answer_budget_has_no_deadline_without_a_timeout():
    assert AnswerBudget("u", 5.0, None, 1).deadline is None
    assert AnswerBudget("u", 5.0, 2.0, 1).deadline == 7.0


def test_healthy_lab_is_unaffected(lab_with):
    lab, collector = lab_with()
    assert collector.logon().ok
    facts = collector.mailboxes()
    assert all(r.ok for r in facts.reads)
    assert all(r.hostile is None for r in lab.log)
