"""The collector's root-cause gating and its view of every front end."""

from __future__ import annotations

import hashlib
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


# --- a pinned certificate (ews.fingerprint) -----------------------------------------


def presented_sha256(lab: Lab) -> str:
    """The SHA-256 of the certificate the lab's EWS endpoint presents."""
    from ewsready.probes import network

    _, chain, _ = network.connect(
        lab.scenario.ews_host, "127.0.0.1", lab.ews_port, 10.0
    )
    return hashlib.sha256(chain[0]).hexdigest().upper()


def pinned_collector(lab: Lab, fingerprint: str) -> Collector:
    settings = replace(lab_settings(lab), ews_fingerprint=fingerprint)
    return Collector(settings, [lab.public_root_bundle], "lab root")


def ews_posts(lab: Lab) -> list:
    """Signed-in EWS requests the lab received (the anonymous probes only GET)."""
    return [entry for entry in lab.log if entry.method == "POST"]


def test_a_matching_pin_lets_the_password_go_to_a_self_signed_certificate():
    with Lab(load_scenario("cert_self_signed")) as lab:
        collector = pinned_collector(lab, presented_sha256(lab))
        try:
            certificates = collector.certificates()
            logon = collector.logon()
            mailboxes = collector.mailboxes()
        finally:
            collector.close()

    assert logon.ok, logon
    assert mailboxes.reads and all(read.ok for read in mailboxes.reads)
    assert ews_posts(lab)
    # The calendar service knows no pin: the chain is still a failure, which says
    # what the audit did.
    findings = for_each(certificate_rules.chains_to_public_root, certificates)
    assert [f.sentence for f in findings] == [
        "The certificate on mail.contoso.example is self-signed (EX01); no public "
        "root vouches for it. The signed-in checks ran on the certificate pinned in "
        "ews.fingerprint."
    ]


@pytest.mark.parametrize("scenario", ["cert_self_signed", "healthy"])
def test_another_certificate_than_the_pinned_one_gets_no_password(scenario):
    with Lab(load_scenario(scenario)) as lab:
        collector = pinned_collector(lab, "0F" * 32)
        try:
            certificates = collector.certificates()
            logon = collector.logon()
            answer = collector.url()
        finally:
            collector.close()

    assert logon == Blocked(
        "the certificate on mail.contoso.example (127.0.0.1) is not the one "
        "ews.fingerprint pins, and the password is sent only to that one",
        "certificate",
    )
    assert ews_posts(lab) == []
    findings = for_each(certificate_rules.chains_to_public_root, certificates)
    assert findings[0].sentence == (
        "The certificate on mail.contoso.example is not the one pinned in "
        "ews.fingerprint, so the audit did not send the password to it."
    )
    # Requests without the password still see the endpoint as it is.
    assert answer.given_answer.status == 401


@pytest.mark.parametrize(
    "scenario, pin, signs_in",
    [
        # A publicly trusted chain is refused when it is not the pinned certificate,
        ("healthy", "other", False),
        # and an untrusted one is used when it is.
        ("cert_self_signed", "presented", True),
    ],
)
def test_the_transport_itself_holds_to_the_pin(scenario, pin, signs_in):
    """Even a sign-in that skips the collector's gate goes only to the pinned
    certificate: urllib3 compares the leaf before a byte of the request is sent."""
    from ewsready.probes import ews

    with Lab(load_scenario(scenario)) as lab:
        fingerprint = presented_sha256(lab) if pin == "presented" else "0F" * 32
        collector = pinned_collector(lab, fingerprint)
        try:
            collector.reachability()  # routes the host, with the pin
            lab.clear_log()
            facts, _ = ews.probe_logon(collector._target(lab.url), ews.RequestCounter())
        finally:
            collector.close()

    assert facts.ok is signs_in, facts
    assert bool(ews_posts(lab)) is signs_in


def test_an_http_url_on_the_tls_port_signs_in_over_https_only(monkeypatch):
    """http://host:443/...: reachability verifies TLS on that port, so the signed-in
    checks go there over https; not one byte of Basic goes out in the clear."""
    import base64

    sent: list[bytes] = []
    real_sendall = socket.socket.sendall

    def watched(self, data, *args):  # type: ignore[no-untyped-def]
        sent.append(bytes(data))
        return real_sendall(self, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", watched)
    with Lab(load_scenario("healthy")) as lab:
        settings = replace(
            lab_settings(lab), ews_url=lab.url.replace("https://", "http://", 1)
        )
        collector = Collector(settings, [lab.public_root_bundle], "lab root")
        try:
            url = collector.effective_url()
            logon = collector.logon()
        finally:
            collector.close()

    assert url == lab.url and logon.ok, logon
    assert ews_posts(lab), "the sign-in went to the lab over TLS"
    basic = base64.b64encode(f"{settings.username}:".encode()).decode()[:12]
    assert not any(b"Authorization: Basic" in chunk for chunk in sent)
    assert not any(basic.encode() in chunk for chunk in sent)


def test_basic_credentials_are_refused_for_http_before_any_connection():
    import requests

    from ewsready.probes import ews
    from ewsready.secret import Secret
    from ewsready.transport import PinnedAdapter

    session = requests.Session()
    session.mount("http://", PinnedAdapter())
    with pytest.raises(ValueError, match="over plain HTTP"):
        session.get("http://127.0.0.1:9/EWS/Exchange.asmx", auth=("svc", "pw"))
    with pytest.raises(ValueError, match="refusing to send Basic credentials"):
        ews.EwsTarget(
            "http://mail.contoso.example/EWS/Exchange.asmx",
            "svc",
            Secret("pw"),
            2.0,
            1,
            ews.BusyBudget(1.0),
            ews.Breaker(),
        )


def test_a_failed_probe_fails_the_same_way_for_every_check_that_asks():
    from ewsready.secret import Secret
    from ewsready.settings import Settings

    calls = []

    class Probed(Collector):
        @Collector._once
        def facts(self):  # type: ignore[no-untyped-def]
            calls.append(1)
            raise ValueError("unreadable")

    collector = Probed(Settings("x", "", "", Secret("")))
    try:
        errors = []
        for _ in range(3):
            with pytest.raises(ValueError) as caught:
                collector.facts()
            errors.append(caught.value)
    finally:
        collector.close()
    assert calls == [1] and errors[0] is errors[1] is errors[2]
