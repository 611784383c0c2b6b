"""The EWS probe's waiting: back-off and thread pool give way to a stopping run."""

from __future__ import annotations

import threading
import time

import pytest
from exchangelib import errors as ews_errors

from ewsready import stop
from ewsready.probes import ews
from ewsready.secret import Secret


@pytest.fixture(autouse=True)
def no_stop_left_over():
    stop.clear()
    yield
    stop.clear()


def target(budget: float) -> ews.EwsTarget:
    return ews.EwsTarget(
        "https://mail.contoso.example/EWS/Exchange.asmx",
        "svc",
        Secret("x"),
        2.0,
        1,
        ews.BusyBudget(budget),
        ews.Breaker(),
    )


def always_busy():  # type: ignore[no-untyped-def]
    raise ews_errors.ErrorServerBusy("busy", back_off=30.0)


def test_back_off_is_waited_within_the_budget():
    counter = ews.RequestCounter()
    calls = []

    def busy_once():  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise ews_errors.ErrorServerBusy("busy", back_off=0.05)
        return "answer"

    assert ews.with_back_off(busy_once, target(5.0), counter, "test") == "answer"
    assert counter.count == 2
    assert counter.busy_waits == 1


def test_a_stop_request_cuts_the_back_off_short():
    counter = ews.RequestCounter()
    timer = threading.Timer(0.2, stop.request)
    timer.start()
    started = time.monotonic()
    with pytest.raises(ews_errors.ErrorServerBusy):
        ews.with_back_off(always_busy, target(60.0), counter, "test")
    timer.join()

    assert time.monotonic() - started < 5  # not the 30 s the server asked for
    assert counter.count == 1


def test_no_new_back_off_once_a_stop_is_requested():
    stop.request()
    counter = ews.RequestCounter()
    with pytest.raises(ews_errors.ErrorServerBusy):
        ews.with_back_off(always_busy, target(60.0), counter, "test")
    assert counter.busy_waits == 0


def test_an_interrupted_pool_does_not_wait_for_requests_in_flight():
    release = threading.Event()
    started = []

    def work(item: str) -> str:
        started.append(item)
        if item != "first":
            release.wait(30)  # a request in flight that takes long to end
        return item

    def interrupted(done: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C arrives as the first result comes in

    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            ews._pooled(work, ["first", "second", "third", "fourth"], 2, interrupted)
        elapsed = time.monotonic() - began
    finally:
        release.set()

    assert elapsed < 5
    assert "fourth" not in started  # not started: cancelled
