"""Network probes against the lab's DNS server and certificate authority."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from ewsready.probes import network
from ewsready.settings import Resolver
from lab.dns import LabDns
from lab.pki import LabPki
from lab.scenario import DnsRecord

RECORDS = [
    DnsRecord("mail.contoso.example", "A", "127.0.0.1"),
    DnsRecord("mail.contoso.example", "AAAA", "fd00::25"),
    DnsRecord("autodiscover.contoso.example", "CNAME", "mail.contoso.example"),
    DnsRecord(
        "_autodiscover._tcp.contoso.example", "SRV", "0 0 443 mail.contoso.example"
    ),
    DnsRecord("gone.contoso.example", "NXDOMAIN"),
]


@pytest.fixture(scope="module")
def resolver():
    with LabDns(RECORDS) as dns:
        yield Resolver("127.0.0.1", dns.port)


@pytest.mark.parametrize(
    "host, addresses, cnames, error",
    [
        ("mail.contoso.example", ("127.0.0.1", "fd00::25"), (), None),
        (
            "autodiscover.contoso.example",
            ("127.0.0.1", "fd00::25"),
            ("mail.contoso.example",),
            None,
        ),
        ("gone.contoso.example", (), (), "the name does not exist (NXDOMAIN)"),
        ("nothere.contoso.example", (), (), "the name does not exist (NXDOMAIN)"),
        ("_autodiscover._tcp.contoso.example", (), (), "it has no A or AAAA record"),
        ("127.0.0.1", ("127.0.0.1",), (), None),
    ],
)
def test_resolve(resolver, host, addresses, cnames, error):
    answer = network.resolve(host, [resolver], timeout=3)
    assert (answer.addresses, answer.cnames, answer.error) == (addresses, cnames, error)
    assert not answer.resolver_failed


def test_a_silent_resolver_is_a_resolver_failure_and_waits_once():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        answer = network.resolve(
            "mail.contoso.example",
            [Resolver("127.0.0.1", silent.getsockname()[1])],
            0.3,
        )
    finally:
        silent.close()
    assert answer.resolver_failed
    assert answer.error.startswith("no answer from 127.0.0.1:")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return LabPki(tmp_path_factory.mktemp("pki"))


def serve_once(credentials) -> tuple[int, threading.Thread]:
    """A one-connection TLS server on loopback with the variant's chain."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if credentials.min_security_level == 0:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(credentials.chain_pem, credentials.key_pem)
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.mark.parametrize(
    "variant, sent, verified, issuer_in_store, root_sent",
    [
        ("good", 2, True, True, False),
        ("missing_intermediate", 1, False, False, False),
        ("internal_ca", 2, False, False, True),
        ("self_signed", 1, False, False, True),
        ("expired", 2, False, True, False),
        ("sha1", 2, False, True, False),
    ],
)
def test_chain_as_sent(pki, variant, sent, verified, issuer_in_store, root_sent):
    host = "mail.contoso.example"
    port, thread = serve_once(pki.server_credentials(variant, host))
    attempt, chain, cipher = network.connect(host, "127.0.0.1", port, timeout=5)
    thread.join(5)
    assert attempt.tls_ok and attempt.tls_version in ("TLS 1.2", "TLS 1.3")
    roots = network.load_store([Path(pki.public_root_bundle)])
    facts = network.certificate_facts(
        host, "127.0.0.1", port, chain, attempt.tls_version, cipher, roots, "lab"
    )
    assert len(facts.chain) == sent
    assert (facts.verified, facts.issuer_in_store, facts.last_issuer_sent) == (
        verified,
        issuer_in_store,
        root_sent,
    )
    assert len(facts.leaf.thumbprint) == 40


def test_closed_port_is_a_tcp_failure():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    attempt, chain, _ = network.connect(
        "mail.contoso.example", "127.0.0.1", port, timeout=2
    )
    assert attempt.tcp_ok is False and chain == []
    assert attempt.error.startswith("TCP: ")
