"""Tests for lab.dns, asked through dnspython's own client code on 127.0.0.1 only."""

from __future__ import annotations

import errno
import logging
import socket
import struct
from collections.abc import Callable, Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

import lab.dns
from lab.dns import LabDns
from lab.scenario import DnsRecord, load_scenario, scenario_names

logger = logging.getLogger(__name__)

TIMEOUT = 5.0

RECORDS = [
    DnsRecord("mail.contoso.example", "A", "127.0.0.1"),
    DnsRecord("mail.contoso.example", "AAAA", "fd00:c0:ffee::25"),
    DnsRecord("Intranet.Contoso.Example.", "A", "10.1.2.3"),
    DnsRecord("autodiscover.contoso.example", "CNAME", "mail.contoso.example"),
    DnsRecord(
        "_autodiscover._tcp.contoso.example", "SRV", "0 0 443 mail.contoso.example"
    ),
    DnsRecord("legacy.contoso.example", "CNAME", "gone.contoso.example"),
    DnsRecord("gone.contoso.example", "NXDOMAIN"),
    DnsRecord("owa.contoso.example", "CNAME", "owa.outside.example"),
    DnsRecord("pool.contoso.example", "A", "127.0.0.2", ttl=300),
    DnsRecord("pool.contoso.example", "A", "127.0.0.3", ttl=60),
    DnsRecord("loop-a.contoso.example", "CNAME", "loop-b.contoso.example"),
    DnsRecord("loop-b.contoso.example", "CNAME", "loop-a.contoso.example"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[LabDns]:
    with LabDns(RECORDS) as running:
        yield running


Ask = Callable[[dns.message.Message, LabDns], dns.message.Message]


def _udp(query: dns.message.Message, server: LabDns) -> dns.message.Message:
    return dns.query.udp(query, server.host, port=server.port, timeout=TIMEOUT)


def _tcp(query: dns.message.Message, server: LabDns) -> dns.message.Message:
    return dns.query.tcp(query, server.host, port=server.port, timeout=TIMEOUT)


def _answers(response: dns.message.Message) -> list[tuple[str, str, list[str]]]:
    return [
        (
            # Name compression may echo the question's spelling: compare folded.
            rrset.name.to_text().lower(),
            dns.rdatatype.to_text(rrset.rdtype),
            sorted(rdata.to_text() for rdata in rrset),
        )
        for rrset in response.answer
    ]


def _answers_of(section: list) -> list[tuple[str, str, list[str]]]:
    response = dns.message.Message()
    response.answer = section
    return _answers(response)


def _rr(label: str, kind: str, *values: str) -> tuple[str, str, list[str]]:
    """An expected RRset under contoso.example, as _answers renders it."""
    return f"{label}.contoso.example.", kind, sorted(values)


MAIL_A = _rr("mail", "A", "127.0.0.1")
MAIL_AAAA = _rr("mail", "AAAA", "fd00:c0:ffee::25")
AUTODISCOVER = _rr("autodiscover", "CNAME", "mail.contoso.example.")
SRV = _rr("_autodiscover._tcp", "SRV", "0 0 443 mail.contoso.example.")
POOL = _rr("pool", "A", "127.0.0.2", "127.0.0.3")

# name asked, type, rcode, answer section (None: not looked at)
ANSWERS = [
    ("mail.contoso.example", "A", "NOERROR", [MAIL_A]),
    ("MAIL.Contoso.Example.", "AAAA", "NOERROR", [MAIL_AAAA]),
    ("intranet.contoso.example", "A", "NOERROR", [_rr("intranet", "A", "10.1.2.3")]),
    ("autodiscover.contoso.example", "A", "NOERROR", [AUTODISCOVER, MAIL_A]),
    ("autodiscover.contoso.example", "AAAA", "NOERROR", [AUTODISCOVER, MAIL_AAAA]),
    ("autodiscover.contoso.example", "CNAME", "NOERROR", [AUTODISCOVER]),
    ("_autodiscover._tcp.contoso.example", "SRV", "NOERROR", [SRV]),
    ("pool.contoso.example", "A", "NOERROR", [POOL]),
    ("mail.contoso.example", "SRV", "NOERROR", []),
    ("nowhere.contoso.example", "A", "NXDOMAIN", []),
    ("gone.contoso.example", "A", "NXDOMAIN", []),
    (
        "legacy.contoso.example",
        "A",
        "NXDOMAIN",
        [_rr("legacy", "CNAME", "gone.contoso.example.")],
    ),
    (
        "owa.contoso.example",
        "A",
        "NOERROR",
        [_rr("owa", "CNAME", "owa.outside.example.")],
    ),
    ("loop-a.contoso.example", "A", "SERVFAIL", None),
]


@pytest.mark.parametrize("ask", [_udp, _tcp], ids=["udp", "tcp"])
@pytest.mark.parametrize("name, kind, rcode, answer", ANSWERS)
def test_answers(
    server: LabDns,
    ask: Ask,
    name: str,
    kind: str,
    rcode: str,
    answer: list[tuple[str, str, list[str]]] | None,
) -> None:
    response = ask(dns.message.make_query(name, kind), server)

    assert dns.rcode.to_text(response.rcode()) == rcode
    assert response.flags & dns.flags.AA
    if answer is not None:
        assert _answers(response) == answer


def test_one_ttl_per_rrset_the_smallest(server: LabDns) -> None:
    response = _udp(dns.message.make_query("pool.contoso.example", "A"), server)

    assert [rrset.ttl for rrset in response.answer] == [60]


def test_srv_answer_carries_the_target_addresses(server: LabDns) -> None:
    query = dns.message.make_query("_autodiscover._tcp.contoso.example", "SRV")

    response = _udp(query, server)

    assert sorted(_answers_of(response.additional)) == [MAIL_A, MAIL_AAAA]


@pytest.fixture
def resolver(server: LabDns) -> dns.resolver.Resolver:
    # configure=False: never read the host's resolv.conf, never ask anyone but the lab.
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.host]
    resolver.port = server.port
    resolver.lifetime = TIMEOUT
    return resolver


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_resolver_follows_the_cname(resolver: dns.resolver.Resolver, tcp: bool) -> None:
    answer = resolver.resolve("autodiscover.contoso.example", "AAAA", tcp=tcp)

    assert answer.canonical_name.to_text() == "mail.contoso.example."
    assert [rdata.address for rdata in answer] == ["fd00:c0:ffee::25"]


# name, type, what the resolver raises
RESOLVER_FAILURES = [
    ("nowhere.contoso.example", "A", dns.resolver.NXDOMAIN),
    ("legacy.contoso.example", "A", dns.resolver.NXDOMAIN),
    ("mail.contoso.example", "SRV", dns.resolver.NoAnswer),
]


@pytest.mark.parametrize("name, kind, error", RESOLVER_FAILURES)
def test_resolver_failures(
    resolver: dns.resolver.Resolver, name: str, kind: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        resolver.resolve(name, kind)


def test_queries_are_logged_normalised() -> None:
    with LabDns(RECORDS) as server:
        _udp(dns.message.make_query("Mail.Contoso.Example.", "A"), server)
        _tcp(dns.message.make_query("nowhere.contoso.example", "SRV"), server)

        assert server.queries == [
            ("mail.contoso.example", "A"),
            ("nowhere.contoso.example", "SRV"),
        ]


def test_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    records = [DnsRecord("big.contoso.example", "A", f"10.0.0.{n}") for n in range(60)]
    query = dns.message.make_query("big.contoso.example", "A")

    with LabDns(records) as server:
        over_udp = _udp(query, server)
        over_tcp = _tcp(query, server)

    assert over_udp.flags & dns.flags.TC
    assert not over_tcp.flags & dns.flags.TC
    assert len(over_tcp.answer[0]) == 60


MALFORMED = [
    b"",
    b"\x00",
    b"\x12\x34\x01\x00\x00\x01",
    b"\xff" * 64,
    # A well-formed response (QR set): answering it could start a packet loop.
    dns.message.make_response(
        dns.message.make_query("mail.contoso.example", "A")
    ).to_wire(),
]


def test_malformed_udp_packets_are_ignored() -> None:
    with LabDns(RECORDS) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for packet in MALFORMED:
                sender.sendto(packet, (server.host, server.port))

        response = _udp(dns.message.make_query("mail.contoso.example", "A"), server)

        assert _answers(response) == [MAIL_A]
        assert server.queries == [("mail.contoso.example", "A")]


@pytest.mark.parametrize("packet", MALFORMED[1:])
def test_malformed_tcp_frames_are_ignored(packet: bytes) -> None:
    with LabDns(RECORDS) as server:
        with socket.create_connection((server.host, server.port), TIMEOUT) as stream:
            stream.sendall(struct.pack("!H", len(packet)) + packet)
        with socket.create_connection((server.host, server.port), TIMEOUT) as stream:
            # A frame announcing more than is sent, then the client gives up.
            stream.sendall(struct.pack("!H", 100) + packet[:3])

        response = _tcp(dns.message.make_query("mail.contoso.example", "A"), server)

        assert _answers(response) == [MAIL_A]


def test_several_queries_on_one_tcp_connection(server: LabDns) -> None:
    names = ["mail.contoso.example", "intranet.contoso.example"]

    with socket.create_connection((server.host, server.port), TIMEOUT) as stream:
        for name in names:
            wire = dns.message.make_query(name, "A").to_wire()
            stream.sendall(struct.pack("!H", len(wire)) + wire)
        answered = [
            dns.query.receive_tcp(stream, expiration=None)[0].answer[0].name.to_text()
            for _ in names
        ]

    assert answered == ["mail.contoso.example.", "intranet.contoso.example."]


def test_bind_retries_when_the_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    real_bind_pair = lab.dns._bind_pair
    calls: list[str] = []

    def clashing(host: str) -> tuple[socket.socket, socket.socket]:
        calls.append(host)
        if len(calls) < 3:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return real_bind_pair(host)

    monkeypatch.setattr(lab.dns, "_bind_pair", clashing)

    with LabDns(RECORDS) as server:
        response = _tcp(dns.message.make_query("mail.contoso.example", "A"), server)

    # A real clash with a port in use on this machine may add attempts of its own.
    assert len(calls) >= 3
    assert set(calls) == {"127.0.0.1"}
    assert _answers(response) == [MAIL_A]


def test_bind_gives_up_after_a_few_clashes(monkeypatch: pytest.MonkeyPatch) -> None:
    def always_clashing(host: str) -> tuple[socket.socket, socket.socket]:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    monkeypatch.setattr(lab.dns, "_bind_pair", always_clashing)

    with pytest.raises(OSError, match="in use"):
        LabDns(RECORDS).start()


def test_stop_is_idempotent_and_start_works_again() -> None:
    server = LabDns(RECORDS)
    server.stop()
    server.start()
    server.stop()
    server.stop()

    with server:
        response = _udp(dns.message.make_query("mail.contoso.example", "A"), server)

    assert _answers(response) == [MAIL_A]


@pytest.mark.parametrize(
    "record, message",
    [
        (DnsRecord("mail.contoso.example", "A", "mail"), "mail.contoso.example A"),
        (DnsRecord("srv.contoso.example", "SRV", "0 0 443"), "srv.contoso.example SRV"),
        (DnsRecord("x.contoso.example", "BOGUS", "1"), "x.contoso.example BOGUS"),
    ],
)
def test_bad_record_names_itself(record: DnsRecord, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabDns([record])


def test_internationalised_name_is_found_by_its_punycode() -> None:
    with LabDns([DnsRecord("bücher.contoso.example", "A", "127.0.0.9")]) as server:
        response = _udp(
            dns.message.make_query("xn--bcher-kva.contoso.example", "A"), server
        )

    assert _answers(response) == [
        ("xn--bcher-kva.contoso.example.", "A", ["127.0.0.9"])
    ]


@pytest.mark.parametrize("name", scenario_names())
def test_every_shipped_scenario_serves_its_records(name: str) -> None:
    scenario = load_scenario(name)

    with LabDns(scenario.dns_records) as server:
        response = _udp(dns.message.make_query(scenario.ews_host, "A"), server)

    assert response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
