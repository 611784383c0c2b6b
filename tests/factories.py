"""Small builders of facts for the rule tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from ewsready.facts import (
    CertificateFacts,
    CertificateInfo,
    ConnectAttempt,
    DnsAnswer,
    Reachability,
)

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
HOST = "mail.contoso.example"


def cert(**changes) -> CertificateInfo:
    base = CertificateInfo(
        subject=f"CN={HOST}",
        issuer="CN=Lab Public Issuing CA 1",
        serial="1f",
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW + dt.timedelta(days=300),
        dns_names=(HOST,),
        key_type="RSA",
        key_bits=2048,
        signature_hash="sha256",
        self_issued=False,
        self_signed=False,
        is_ca=False,
        sha256="AB" * 32,
        thumbprint="CD" * 20,
    )
    return replace(base, **changes)


INTERMEDIATE = cert(
    subject="CN=Lab Public Issuing CA 1",
    issuer="CN=Lab Public Root CA",
    dns_names=(),
    is_ca=True,
)


def chain_facts(*chain: CertificateInfo, **changes) -> CertificateFacts:
    base = CertificateFacts(
        host=HOST,
        address="127.0.0.1",
        port=443,
        chain=chain or (cert(), INTERMEDIATE),
        tls_version="TLS 1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        trust_store="test store",
        verified=True,
        verify_error=None,
        issuer_in_store=True,
        last_issuer_sent=False,
        checked_at=NOW,
    )
    return replace(base, **changes)


def reach(addresses=("8.8.4.4",), error=None, attempts=None, lab=False) -> Reachability:
    answer = DnsAnswer(HOST, ("1.1.1.1:53",), tuple(addresses), error=error)
    if attempts is None:
        attempts = tuple(
            ConnectAttempt(a, 443, True, True, "TLS 1.3") for a in addresses
        )
    return Reachability(HOST, 443, answer, tuple(attempts), loopback_is_public=lab)
