import pytest

from ewsready.facts import ConnectAttempt
from ewsready.findings import Severity
from ewsready.probes.network import address_kind
from ewsready.rules import reachability as rules
from tests.factories import HOST, reach


@pytest.mark.parametrize(
    "address, lab, kind",
    [
        ("203.0.113.10", False, "documentation (reserved)"),
        ("2001:db8::1", False, "documentation (reserved)"),
        ("8.8.4.4", False, "global"),
        ("2606:4700::1111", False, "global"),
        ("10.20.30.40", False, "private"),
        ("192.168.1.5", False, "private"),
        ("172.16.0.1", False, "private"),
        ("fd00:c0:ffee::25", False, "private"),
        ("100.64.0.9", False, "shared (CGNAT)"),
        ("169.254.10.1", False, "link-local"),
        ("fe80::1", False, "link-local"),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, "global"),
        ("::1", True, "global"),
    ],
)
def test_address_kind(address, lab, kind):
    assert address_kind(address, loopback_is_public=lab) == kind


def test_nxdomain_fails_resolution_and_blocks_the_rest():
    facts = reach(
        addresses=(),
        error="NXDOMAIN: mail.contoso.example does not exist in public DNS",
    )
    [finding] = rules.host_resolves(facts)
    assert (
        finding.sentence
        == f"{HOST} does not resolve in public DNS: NXDOMAIN: {HOST} does not exist in public DNS."
    )
    assert finding.values["resolvers"] == ["1.1.1.1"]
    assert rules.addresses_are_global(facts)[0].severity == Severity.BLOCKED
    assert rules.endpoint_accepts_connections(facts)[0].severity == Severity.BLOCKED


def test_private_address_next_to_a_public_one():
    facts = reach(addresses=("8.8.4.4", "fd00:c0:ffee::25"))
    [finding] = rules.addresses_are_global(facts)
    assert finding.sentence == (
        f"{HOST} resolves in public DNS to fd00:c0:ffee::25 (private), which the "
        "internet cannot reach."
    )
    assert finding.values["addresses"] == ["fd00:c0:ffee::25"]


@pytest.mark.parametrize(
    "attempts, sentence",
    [
        ((ConnectAttempt("8.8.4.4", 443, True, True, "TLS 1.3"),), None),
        (
            (ConnectAttempt("8.8.4.4", 443, False, error="TCP: timed out"),),
            f"{HOST} port 443 does not accept TCP connections at 8.8.4.4.",
        ),
        (
            (ConnectAttempt("8.8.4.4", 443, True, False, error="TLS: reset"),),
            f"{HOST} port 443 does not accept TLS handshakes at 8.8.4.4.",
        ),
        (
            (ConnectAttempt("10.0.0.1", 443, None, skipped="private address"),),
            f"Blocked by reachability: {HOST} has no address the internet can reach",
        ),
    ],
)
def test_endpoint_accepts_connections(attempts, sentence):
    facts = reach(addresses=tuple(a.address for a in attempts), attempts=attempts)
    findings = rules.endpoint_accepts_connections(facts)
    assert [f.sentence for f in findings] == ([sentence] if sentence else [])


def test_silent_resolvers_could_not_evaluate_and_are_not_blamed_on_the_zone():
    facts = reach(addresses=(), error="no answer from 127.0.0.1:9 within 5 s")
    facts = type(facts)(
        facts.host,
        facts.port,
        type(facts.dns)(**{**facts.dns.__dict__, "resolver_failed": True}),
        (),
    )
    [finding] = rules.host_resolves(facts)
    assert finding.severity == Severity.UNKNOWN
    assert finding.fix is None
    assert (
        rules.unresolved(facts).cause == f"public DNS could not be asked about {HOST}"
    )


def test_an_ip_literal_url_is_named_as_such():
    facts = reach(addresses=("10.1.2.3",), attempts=())
    facts = type(facts)(
        facts.host,
        facts.port,
        type(facts.dns)(**{**facts.dns.__dict__, "literal": True}),
        (),
    )
    [finding] = rules.addresses_are_global(facts)
    assert finding.sentence == (
        "The EWS URL names the address 10.1.2.3 (private) instead of a host name, "
        "and the internet cannot reach it."
    )


def test_lab_loopback_is_labelled_as_a_stand_in():
    facts = reach(addresses=("127.0.0.1", "fd00::5"), lab=True)
    [finding] = rules.addresses_are_global(facts)
    assert (
        "127.0.0.1: loopback, standing in for a public address in the lab"
        in finding.evidence
    )
