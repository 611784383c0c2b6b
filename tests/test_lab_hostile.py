"""The lab's hostile knob: which requests it spoils, and the bodies it uses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests
from lxml import etree

from lab import Lab, ScenarioError, load_scenario
from lab.ews_hostile import (
    LargeBody,
    cut_off,
    padded,
    with_entity_bomb,
    with_external_entities,
)
from lab.scenario import HOSTILE_BEHAVIOURS, parse_scenario
from tests.test_lab_ews import session_for, soap

HEALTHY = load_scenario("healthy")
ENVELOPE = (
    b"<?xml version='1.0' encoding='utf-8'?>\n"
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<s:Header><h/></s:Header><s:Body><answer>NoError</answer></s:Body></s:Envelope>"
)
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@pytest.fixture
def hostile_lab() -> Iterator:
    labs: list[Lab] = []

    def start(**changes: object) -> Lab:
        lab = Lab(replace(HEALTHY, **changes))
        labs.append(lab)
        lab.start()
        return lab

    yield start
    for lab in labs:
        lab.stop()


def signed_in(lab: Lab, session: requests.Session) -> requests.Response:
    body = soap(
        "<m:ResolveNames><m:UnresolvedEntry>ana</m:UnresolvedEntry></m:ResolveNames>"
    )
    return session.post(
        lab.url, data=body, auth=(HEALTHY.service_upn, lab.password), timeout=10
    )


def test_window_of_spoilt_requests(hostile_lab):
    lab = hostile_lab(hostile="empty_body", hostile_after=1, hostile_requests=2)
    session = session_for(lab)

    answers = [signed_in(lab, session) for _ in range(4)]

    assert [len(a.content) > 0 for a in answers] == [True, False, False, True]
    assert [r.hostile for r in lab.log] == [None, "empty_body", "empty_body", None]


def test_only_signed_in_ews_requests_are_spoilt(hostile_lab):
    lab = hostile_lab(hostile="http_503")
    session = session_for(lab)

    anonymous = session.get(lab.url, timeout=10)
    wrong_password = session.post(
        lab.url, data=soap(""), auth=(HEALTHY.service_upn, "wrong"), timeout=10
    )
    owa = session.get(lab.base_url + "/owa/", allow_redirects=False, timeout=10)
    spoilt = signed_in(lab, session)

    assert (anonymous.status_code, wrong_password.status_code) == (401, 401)
    assert owa.status_code == 302
    assert spoilt.status_code == 503
    assert spoilt.headers["Retry-After"] == "2"  # busy_back_off_ms 2000 in seconds
    assert [r.hostile for r in lab.log] == [None, None, None, "http_503"]


def test_anonymous_requests_are_spoilt_when_asked(hostile_lab):
    lab = hostile_lab(hostile="reset_mid_body", hostile_anonymous=True)
    with pytest.raises(requests.RequestException):
        session_for(lab).get(lab.url, timeout=10)
    assert [r.hostile for r in lab.log] == ["reset_mid_body"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hostile": "teapot"}, "hostile: 'teapot' is not one of"),
        (
            {"hostile": "html_page", "hostile_anonymous": True},
            "hostile_anonymous needs one of black_hole, slow_drip, reset_mid_body",
        ),
    ],
)
def test_scenario_checks_the_knob(changes, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({"description": "x", **changes}, "x")


def test_every_behaviour_has_a_scenario_that_uses_it():
    names = [
        "ews_black_hole",
        "ews_slow_drip",
        "ews_reset",
        "ews_html_page",
        "ews_empty_body",
        "ews_invalid_xml",
        "ews_huge_body",
        "ews_entity_expansion",
        "ews_external_entity",
        "ews_http_503",
    ]
    used = {load_scenario(name).hostile for name in names}
    assert used == set(HOSTILE_BEHAVIOURS) - {""}


def test_large_body_is_made_on_the_way_out():
    body = padded(ENVELOPE, 3 * 1024 * 1024 + 7)
    assert isinstance(body, LargeBody)
    assert len(body) == sum(len(chunk) for chunk in body.chunks())
    assert len(body) == 3 * 1024 * 1024 + 7
    whole = b"".join(body.chunks())
    assert etree.fromstring(whole, SAFE).findtext("{*}Body/answer") == "NoError"


def test_cut_off_answer_is_not_well_formed():
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(cut_off(ENVELOPE), SAFE)


def test_entity_bomb_nests_ten_levels():
    bomb = with_entity_bomb(ENVELOPE)
    assert bomb.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<!DOCTYPE ")
    assert bomb.count(b"<!ENTITY") == 10
    assert b'<!ENTITY lol9 "' + b"&lol8;" * 10 + b'">' in bomb
    # libxml2 itself refuses to take it apart, even without resolving entities.
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        etree.fromstring(bomb, SAFE)
    assert b'<Note xmlns="urn:ewsready:lab">&lol9;</Note>' in bomb


def test_external_entities_name_the_file_and_the_url():
    answer = with_external_entities(ENVELOPE, "http://127.0.0.1:9/x?a=1&b=2")
    assert b'<!ENTITY leak SYSTEM "file:///etc/passwd">' in answer
    assert b'SYSTEM "http://127.0.0.1:9/x?a=1&b=2"' in answer
    assert b"&leak;&fetch;" in answer
    assert b"fetch" not in with_external_entities(ENVELOPE)
