import datetime as dt

import pytest

from ewsready.findings import Severity
from ewsready.report import render
from ewsready.rules import certificate as rules
from tests.factories import HOST, INTERMEDIATE, NOW, cert, chain_facts

SELF_SIGNED = cert(
    subject="CN=EX01",
    issuer="CN=EX01",
    self_issued=True,
    self_signed=True,
    dns_names=("EX01", "EX01.contoso.local"),
)
INTERNAL_ROOT = cert(
    subject="CN=Contoso Enterprise Root CA",
    issuer="CN=Contoso Enterprise Root CA",
    self_issued=True,
    self_signed=True,
    is_ca=True,
    dns_names=(),
)
INTERNAL_LEAF = cert(issuer="CN=Contoso Enterprise Root CA")


@pytest.mark.parametrize(
    "facts, sentence",
    [
        (chain_facts(), None),
        (
            chain_facts(
                SELF_SIGNED,
                verified=False,
                issuer_in_store=False,
                last_issuer_sent=True,
            ),
            f"The certificate on {HOST} is self-signed (EX01); no public root vouches "
            "for it.",
        ),
        (
            chain_facts(
                INTERNAL_LEAF,
                INTERNAL_ROOT,
                verified=False,
                issuer_in_store=False,
                last_issuer_sent=True,
            ),
            f"The certificate on {HOST} chains to 'Contoso Enterprise Root CA', which "
            "is not a public root.",
        ),
        (
            chain_facts(cert(), verified=False, issuer_in_store=False),
            f"Blocked by certificate: {HOST} does not send the issuer 'Lab Public "
            "Issuing CA 1', so the root cannot be traced",
        ),
        (
            chain_facts(
                cert(not_after=NOW - dt.timedelta(days=1)), INTERMEDIATE, verified=False
            ),
            None,
        ),
        (
            chain_facts(verified=False, verify_error="path length constraint violated"),
            f"The certificate chain on {HOST} does not verify: path length constraint "
            "violated.",
        ),
    ],
)
def test_chains_to_public_root(facts, sentence):
    findings = rules.chains_to_public_root(facts)
    assert [f.sentence for f in findings] == ([sentence] if sentence else [])


PIN = "AB" * 32  # the SHA-256 of the test leaves (tests.factories.cert)
OTHER_PIN = "0F" * 32
SELF_SIGNED_SENTENCE = (
    f"The certificate on {HOST} is self-signed (EX01); no public root vouches for it."
)
MISMATCH = (
    f"The certificate on {HOST} is not the one pinned in ews.fingerprint, so the "
    "audit did not send the password to it."
)
UNTRUSTED = {"verified": False, "issuer_in_store": False, "last_issuer_sent": True}


@pytest.mark.parametrize(
    "facts, sentences",
    [
        # A matching pin: the untrusted chain is still a failure, and says so.
        (
            chain_facts(SELF_SIGNED, pinned=PIN, **UNTRUSTED),
            [f"{SELF_SIGNED_SENTENCE} {rules.PINNED_NOTE}"],
        ),
        (chain_facts(pinned=PIN), []),
        # Another certificate than the pinned one: its own failure, beside the chain's.
        (chain_facts(pinned=OTHER_PIN), [MISMATCH]),
        (
            chain_facts(SELF_SIGNED, pinned=OTHER_PIN, **UNTRUSTED),
            [MISMATCH, SELF_SIGNED_SENTENCE],
        ),
    ],
)
def test_a_pinned_certificate(facts, sentences):
    findings = rules.chains_to_public_root(facts)
    assert [f.sentence for f in findings] == sentences
    assert all(f.severity == Severity.FAIL for f in findings)


def test_a_pin_mismatch_names_both_fingerprints_and_the_fix():
    [finding] = rules.chains_to_public_root(chain_facts(pinned=OTHER_PIN))
    assert finding.evidence == (
        f"presented: SHA-256 {':'.join(['AB'] * 32)} (CN={HOST}, issued by CN=Lab "
        "Public Issuing CA 1, valid to 2027-09-30)",
        f"pinned: SHA-256 {':'.join(['0F'] * 32)}",
    )
    assert finding.fix == "certificate_pin_mismatch"
    assert finding.values == {"host": HOST, "presented": ":".join(["AB"] * 32)}
    commands = render(finding).commands
    assert f"# {HOST} presents the certificate with SHA-256 AB:AB:" in commands
    assert "Get-ChildItem Cert:\\LocalMachine\\My" in commands


@pytest.mark.parametrize(
    "chain, issuer_in_store, sentence",
    [
        ((cert(), INTERMEDIATE), True, None),
        ((cert(),), True, None),  # leaf issued straight by a trusted root
        (
            (cert(),),
            False,
            f"{HOST} sends only its own certificate; its issuer 'Lab Public Issuing "
            "CA 1' is not sent.",
        ),
        (
            (cert(), INTERMEDIATE),
            False,
            f"{HOST} sends 2 certificates but not 'Lab Public Root CA', the issuer of "
            "the last one.",
        ),
        ((SELF_SIGNED,), False, None),  # self-signed is its own finding
    ],
)
def test_sends_whole_chain(chain, issuer_in_store, sentence):
    facts = chain_facts(
        *chain, issuer_in_store=issuer_in_store, verified=issuer_in_store
    )
    findings = rules.sends_whole_chain(facts)
    assert [f.sentence for f in findings] == ([sentence] if sentence else [])
    if sentence:
        assert findings[0].fix == "certificate_incomplete_chain"


@pytest.mark.parametrize(
    "names, ok",
    [
        ((HOST,), True),
        (("*.contoso.example",), True),
        (("MAIL.CONTOSO.EXAMPLE",), True),
        (("*.example",), False),
        (("owa.fabrikam.example",), False),
    ],
)
def test_names_the_host(names, ok):
    findings = rules.names_the_host(chain_facts(cert(dns_names=names), INTERMEDIATE))
    assert (findings == []) is ok
    if not ok:
        assert findings[0].sentence.startswith(f"The certificate on {HOST} is for ")
        assert findings[0].values["names"] == [HOST, "autodiscover.contoso.example"]


def test_a_common_name_without_alternative_names_does_not_count():
    findings = rules.names_the_host(chain_facts(cert(dns_names=()), INTERMEDIATE))
    assert findings[0].sentence == (
        f"The certificate on {HOST} has no subject alternative names (only CN={HOST}); "
        "clients match names there only."
    )


@pytest.mark.parametrize(
    "not_after, severity, sentence",
    [
        (NOW + dt.timedelta(days=300), None, None),
        (
            NOW + dt.timedelta(days=12, hours=-1),
            Severity.WARN,
            f"The certificate on {HOST} expires on 2026-12-16, in 12 days.",
        ),
        (NOW + dt.timedelta(days=30, hours=1), None, None),
        (
            NOW - dt.timedelta(days=3),
            Severity.FAIL,
            f"The certificate on {HOST} expired on 2026-12-01 (3 days ago).",
        ),
    ],
)
def test_within_validity(not_after, severity, sentence):
    findings = rules.within_validity(
        chain_facts(cert(not_after=not_after), INTERMEDIATE)
    )
    assert [(f.severity, f.sentence) for f in findings] == (
        [(severity, sentence)] if sentence else []
    )


@pytest.mark.parametrize(
    "leaf, problem",
    [
        (cert(), None),
        (cert(key_type="EC", key_bits=256), None),
        (
            cert(key_bits=1024),
            "the certificate has a RSA 1024-bit key (at least 2048 needed)",
        ),
        (
            cert(key_type="EC", key_bits=192),
            "the certificate has a EC 192-bit key (at least 256 needed)",
        ),
        (cert(signature_hash="sha1"), "the certificate is signed with SHA1"),
    ],
)
def test_strong_key_and_signature(leaf, problem):
    findings = rules.strong_key_and_signature(chain_facts(leaf, INTERMEDIATE))
    if problem is None:
        assert findings == []
    else:
        assert (
            findings[0].sentence
            == f"The certificate chain on {HOST} is too weak: {problem}."
        )


def test_a_sha1_self_signed_root_is_not_weak():
    root = cert(
        subject="CN=Old Root",
        issuer="CN=Old Root",
        self_issued=True,
        self_signed=True,
        signature_hash="sha1",
        is_ca=True,
    )
    assert rules.strong_key_and_signature(chain_facts(cert(), INTERMEDIATE, root)) == []


@pytest.mark.parametrize(
    "version, ok",
    [
        ("TLS 1.3", True),
        ("TLS 1.2", True),
        ("TLS 1.1", False),
        ("TLS 1.0", False),
        (None, False),
    ],
)
def test_current_tls(version, ok):
    assert (rules.current_tls(chain_facts(tls_version=version)) == []) is ok
