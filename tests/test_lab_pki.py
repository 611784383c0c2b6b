"""Tests for lab.pki: the shape of every certificate variant, and real TLS with it."""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from lab.pki import LabPki, ServerCredentials
from lab.scenario import CERTIFICATE_VARIANTS

logger = logging.getLogger(__name__)

HOST = "mail.contoso.example"
PUBLIC_ISSUER = "Lab Public Issuing CA 1"
INTERNAL_ROOT = "Contoso Enterprise Root CA"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return LabPki(tmp_path_factory.mktemp("pki"))


def _chain(credentials: ServerCredentials) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(credentials.chain_pem.read_bytes())


def _common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _dns_names(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)


def _assert_signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    # Checked by hand: cryptography's verify_directly_issued_by refuses SHA-1.
    public_key = issuer.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        certificate.signature,
        certificate.tbs_certificate_bytes,
        padding.PKCS1v15(),
        certificate.signature_hash_algorithm,
    )


# variant, certificates sent, leaf SAN, issuer CN, leaf key bits, signature hash, level
SHAPES = [
    ("good", 2, [HOST], PUBLIC_ISSUER, 2048, "sha256", 2),
    ("expiring_soon", 2, [HOST], PUBLIC_ISSUER, 2048, "sha256", 2),
    ("self_signed", 1, ["EX01", "EX01.contoso.local"], "EX01", 2048, "sha256", 2),
    ("expired", 2, [HOST], PUBLIC_ISSUER, 2048, "sha256", 2),
    ("wrong_name", 2, ["owa.fabrikam.example"], PUBLIC_ISSUER, 2048, "sha256", 2),
    ("missing_intermediate", 1, [HOST], PUBLIC_ISSUER, 2048, "sha256", 2),
    ("rsa1024", 2, [HOST], PUBLIC_ISSUER, 1024, "sha256", 0),
    ("sha1", 2, [HOST], PUBLIC_ISSUER, 2048, "sha1", 0),
    ("internal_ca", 2, [HOST], INTERNAL_ROOT, 2048, "sha256", 2),
]


def test_shape_table_covers_every_variant() -> None:
    assert sorted(row[0] for row in SHAPES) == sorted(CERTIFICATE_VARIANTS)


@pytest.mark.parametrize(
    "variant, sent, names, issuer, bits, digest, level",
    SHAPES,
    ids=[row[0] for row in SHAPES],
)
def test_variant_shape(
    pki: LabPki,
    variant: str,
    sent: int,
    names: list[str],
    issuer: str,
    bits: int,
    digest: str,
    level: int,
) -> None:
    credentials = pki.server_credentials(variant, HOST)
    chain = _chain(credentials)
    leaf = chain[0]
    leaf_key = leaf.public_key()

    assert len(chain) == sent
    assert _dns_names(leaf) == names
    assert _common_name(leaf.subject) == names[0]
    assert _common_name(leaf.issuer) == issuer
    assert isinstance(leaf_key, rsa.RSAPublicKey)
    assert leaf_key.key_size == bits
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == digest
    assert credentials.min_security_level == level

    private_key = serialization.load_pem_private_key(
        credentials.key_pem.read_bytes(), password=None
    )
    assert private_key.public_key().public_numbers() == leaf_key.public_numbers()
    assert credentials.key_pem.stat().st_mode & 0o077 == 0

    # Every certificate sent is signed by the next one; the last by itself or a root.
    for certificate, signer in itertools.pairwise(chain):
        _assert_signed_by(certificate, signer)
    if variant == "self_signed":
        _assert_signed_by(leaf, leaf)


@pytest.mark.parametrize("variant", CERTIFICATE_VARIANTS)
def test_leaf_extensions(pki: LabPki, variant: str) -> None:
    chain = _chain(pki.server_credentials(variant, HOST))
    leaf = chain[0]
    extensions = leaf.extensions

    basic = extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign
    eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert (
        ski.digest
        == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key()).digest
    )

    if variant == "self_signed":
        assert leaf.issuer == leaf.subject
        return
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    if len(chain) > 1:
        issuer_ski = chain[1].extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        )
        assert aki.key_identifier == issuer_ski.value.digest


# variant, notBefore and notAfter in days from now (to within a day)
VALIDITY = [
    ("good", -30, 367),
    ("expiring_soon", -385, 12),
    ("self_signed", -30, 5 * 365 - 30),
    ("expired", -400, -3),
    ("missing_intermediate", -30, 367),
    ("internal_ca", -30, 367),
]


@pytest.mark.parametrize("variant, starts, ends", VALIDITY)
def test_validity(pki: LabPki, variant: str, starts: int, ends: int) -> None:
    leaf = _chain(pki.server_credentials(variant, HOST))[0]
    now = datetime.datetime.now(datetime.UTC)
    one_day = datetime.timedelta(days=1)

    assert abs(leaf.not_valid_before_utc - now - datetime.timedelta(starts)) < one_day
    assert abs(leaf.not_valid_after_utc - now - datetime.timedelta(ends)) < one_day


def test_intermediate_sits_under_the_public_root(pki: LabPki) -> None:
    (root,) = x509.load_pem_x509_certificates(pki.public_root_bundle.read_bytes())
    intermediate = _chain(pki.server_credentials("good", HOST))[1]

    assert _common_name(intermediate.subject) == PUBLIC_ISSUER
    assert intermediate.issuer == root.subject
    _assert_signed_by(intermediate, root)
    basic = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    assert intermediate.extensions.get_extension_for_class(
        x509.KeyUsage
    ).value.key_cert_sign


@pytest.mark.parametrize(
    "bundle, name",
    [
        ("public_root_bundle", "Lab Public Root CA"),
        ("internal_root_bundle", INTERNAL_ROOT),
    ],
)
def test_root_bundles_hold_one_self_signed_root(
    pki: LabPki, bundle: str, name: str
) -> None:
    (root,) = x509.load_pem_x509_certificates(getattr(pki, bundle).read_bytes())

    assert _common_name(root.subject) == name
    assert root.issuer == root.subject
    _assert_signed_by(root, root)
    basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length is not None


# variant, trust store, accepted. rsa1024 is left out on purpose: cryptography's
# verifier does not judge the leaf's own key size, so the audit must check it itself.
VERIFICATIONS = [
    ("good", "public_root_bundle", True),
    ("expiring_soon", "public_root_bundle", True),
    ("self_signed", "public_root_bundle", False),
    ("expired", "public_root_bundle", False),
    ("wrong_name", "public_root_bundle", False),
    ("missing_intermediate", "public_root_bundle", False),
    ("sha1", "public_root_bundle", False),
    ("internal_ca", "public_root_bundle", False),
    ("internal_ca", "internal_root_bundle", True),
    ("good", "internal_root_bundle", False),
]


@pytest.mark.parametrize("variant, bundle, accepted", VERIFICATIONS)
def test_cryptography_verifier(
    pki: LabPki, variant: str, bundle: str, accepted: bool
) -> None:
    store = Store(x509.load_pem_x509_certificates(getattr(pki, bundle).read_bytes()))
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(HOST))
    leaf, *intermediates = _chain(pki.server_credentials(variant, HOST))

    if accepted:
        verified = verifier.verify(leaf, intermediates)
        assert verified[0] == leaf
    else:
        with pytest.raises(VerificationError):
            verifier.verify(leaf, intermediates)


def test_unknown_variant_names_the_known_ones(pki: LabPki) -> None:
    with pytest.raises(ValueError, match="'ev_green'.*good.*internal_ca"):
        pki.server_credentials("ev_green", HOST)


def test_credentials_are_made_once_per_lab(pki: LabPki) -> None:
    first = pki.server_credentials("good", HOST)

    assert pki.server_credentials("good", HOST) is first
    assert pki.server_credentials("good", "autodiscover.contoso.example") != first


def test_labs_in_one_process_share_their_authorities(
    pki: LabPki, tmp_path: Path
) -> None:
    other = LabPki(tmp_path)

    assert other.public_root_bundle.read_bytes() == pki.public_root_bundle.read_bytes()
    assert (
        other.internal_root_bundle.read_bytes() == pki.internal_root_bundle.read_bytes()
    )
    assert other.public_root_bundle.parent == tmp_path


def test_address_host_goes_into_an_ip_san(pki: LabPki) -> None:
    leaf = _chain(pki.server_credentials("good", "127.0.0.1"))[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1")
    ]


def _server_context(credentials: ServerCredentials) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # The level must drop before the chain is loaded, or loading itself fails.
    if credentials.min_security_level == 0:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(credentials.chain_pem, credentials.key_pem)
    return context


@contextmanager
def _tls_server(credentials: ServerCredentials) -> Iterator[tuple[int, list[str]]]:
    """A one-connection TLS server on 127.0.0.1: its port and what it saw."""
    context = _server_context(credentials)
    outcome: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError as error:
            outcome.append(f"accept failed: {error}")
            return
        connection.settimeout(10)
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                outcome.append("handshake")
                tls.recv(1)
        except (ssl.SSLError, OSError) as error:
            # A client that rejects the certificate aborts the handshake here.
            outcome.append(f"server: {error}")
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcome
    finally:
        listener.close()
        thread.join(10)


def _handshake(
    credentials: ServerCredentials, client: ssl.SSLContext
) -> tuple[bytes, list[str]]:
    with (
        _tls_server(credentials) as (port, outcome),
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        presented = tls.getpeercert(binary_form=True)
    assert presented is not None
    return presented, outcome


@pytest.mark.parametrize("variant", CERTIFICATE_VARIANTS)
def test_every_variant_serves_over_tls(pki: LabPki, variant: str) -> None:
    credentials = pki.server_credentials(variant, HOST)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE

    presented, outcome = _handshake(credentials, client)

    leaf = _chain(credentials)[0]
    assert presented == leaf.public_bytes(serialization.Encoding.DER)
    assert outcome == ["handshake"]


# What Python's default verifying client makes of each variant, given the lab's public
# root as its only trust anchor: the evidence the audit's certificate probe will meet.
# OpenSSL reports one error only, the first it finds (self_signed is also misnamed).
OPENSSL_VERDICTS = [
    ("good", None),
    ("expiring_soon", None),
    ("self_signed", 18),  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    ("expired", 10),  # X509_V_ERR_CERT_HAS_EXPIRED
    ("wrong_name", 62),  # X509_V_ERR_HOSTNAME_MISMATCH
    ("missing_intermediate", 20),  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    ("rsa1024", 66),  # X509_V_ERR_EE_KEY_TOO_SMALL
    ("sha1", 68),  # X509_V_ERR_CA_MD_TOO_WEAK
    ("internal_ca", 19),  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
]


@pytest.mark.parametrize("variant, verify_code", OPENSSL_VERDICTS)
def test_default_client_verdict(
    pki: LabPki, variant: str, verify_code: int | None
) -> None:
    credentials = pki.server_credentials(variant, HOST)
    client = ssl.create_default_context(cafile=pki.public_root_bundle)

    if verify_code is None:
        _, outcome = _handshake(credentials, client)
        assert outcome == ["handshake"]
    else:
        with pytest.raises(ssl.SSLCertVerificationError) as failure:
            _handshake(credentials, client)
        assert failure.value.verify_code == verify_code


def test_internal_root_trusts_the_internal_chain(pki: LabPki) -> None:
    credentials = pki.server_credentials("internal_ca", HOST)
    client = ssl.create_default_context(cafile=pki.internal_root_bundle)

    _, outcome = _handshake(credentials, client)

    assert outcome == ["handshake"]
