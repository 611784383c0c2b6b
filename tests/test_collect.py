"""The collector's root-cause gating and its view of every front end."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import replace

import pytest

from ewsready.collect import Collector
from ewsready.facts import Blocked
from ewsready.rules import certificate as certificate_rules
from fixtures.audit import lab_settings
from fixtures.expect import for_each
from lab import Lab, load_scenario
from lab.pki import LabPki
from lab.scenario import DnsRecord


def rogue_server(lab: Lab, address: str, workdir) -> threading.Thread:
    """A second front end on the same port, sending Exchange's self-signed certificate."""
    credentials = LabPki(workdir).server_credentials(
        "self_signed", lab.scenario.ews_host
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(credentials.chain_pem, credentials.key_pem)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.create_server((address, lab.ews_port), family=family)

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            for _ in range(4):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.settimeout(2)
                        tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_every_front_end_certificate_is_judged(tmp_path):
    base = load_scenario("healthy")
    scenario = replace(
        base,
        dns_records=(
            DnsRecord("mail.contoso.example", "A", "127.0.0.1"),
            DnsRecord("mail.contoso.example", "AAAA", "::1"),
        ),
    )
    with Lab(scenario) as lab:
        try:
            rogue_server(lab, "::1", tmp_path)
        except OSError as exc:
            pytest.fail(f"cannot bind ::1 on this machine: {exc}")
        collector = Collector(lab_settings(lab), [lab.public_root_bundle], "lab root")
        try:
            facts = collector.certificates()
            blocked = collector.credentials_blocked()
        finally:
            collector.close()

    assert isinstance(facts, list) and len(facts) == 2
    findings = for_each(certificate_rules.chains_to_public_root, facts)
    assert [f.sentence for f in findings] == [
        "The certificate on mail.contoso.example is self-signed (EX01); no public root "
        "vouches for it. (at ::1)"
    ]
    assert isinstance(blocked, Blocked) and "::1" in blocked.cause
