"""A certificate authority for the lab, made when the lab starts.

Two hierarchies exist side by side:

- "Lab Public Root CA" -> "Lab Public Issuing CA 1" -> leaves. In lab mode the root
  stands in for the public trust store, so a leaf under it is "publicly trusted".
- "Contoso Enterprise Root CA" -> leaves, the way an Active Directory CA issues them.
  Only a client handed that root explicitly trusts these leaves.

Each certificate variant named in lab.scenario.CERTIFICATE_VARIANTS is one fault (or
none) in what the Exchange server presents. Keys and CA certificates are cached for the
whole process: RSA key generation dominates the cost, and a test run starts many labs.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.scenario import CERTIFICATE_VARIANTS

logger = logging.getLogger(__name__)

PUBLIC_ROOT_NAME = "Lab Public Root CA"
PUBLIC_ISSUING_NAME = "Lab Public Issuing CA 1"
INTERNAL_ROOT_NAME = "Contoso Enterprise Root CA"

# What New-ExchangeCertificate names the self-signed certificate made at install.
EXCHANGE_SERVER_NAME = "EX01"
EXCHANGE_AD_DOMAIN = "contoso.local"
FOREIGN_NAME = "owa.fabrikam.example"

# Leaves may be backdated by more than a year (expired, expiring_soon); the CAs are
# older still so that every leaf's validity lies inside its issuer's.
CA_BACKDATE = datetime.timedelta(days=3 * 365)
LEAF_LIFETIME = datetime.timedelta(days=397)
LEAF_BACKDATE = datetime.timedelta(days=30)
# Exchange's own self-signed certificate is valid for five years.
SELF_SIGNED_LIFETIME = datetime.timedelta(days=5 * 365)

# Python's default contexts run at OpenSSL security level 2, which refuses to load or
# accept RSA keys under 2048 bits and SHA-1 certificate signatures; a server presenting
# such a certificate must first be given "@SECLEVEL=0" (before loading the chain).
DEFAULT_SECURITY_LEVEL = 2
WEAK_SECURITY_LEVEL = 0


@dataclass(frozen=True)
class ServerCredentials:
    """What a TLS server loads to present one certificate variant."""

    chain_pem: Path
    key_pem: Path
    min_security_level: int


@dataclass(frozen=True)
class _Authority:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


_cache_lock = threading.RLock()
_keys: dict[tuple[str, int], rsa.RSAPrivateKey] = {}
_authorities: dict[str, _Authority] = {}


def _key(role: str, bits: int) -> rsa.RSAPrivateKey:
    """A private key for a role, made once per process."""
    with _cache_lock:
        cached = _keys.get((role, bits))
        if cached is None:
            logger.debug("generating a %d-bit RSA key for %s", bits, role)
            cached = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            _keys[(role, bits)] = cached
        return cached


def _now() -> datetime.datetime:
    # Whole seconds: certificates carry no fractions, and comparing is simpler.
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _ca_name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    path_length: int,
    lifetime: datetime.timedelta,
    issuer: _Authority | None,
) -> _Authority:
    """A CA certificate, self-signed when no issuer is given."""
    now = _now()
    issuer_name = subject if issuer is None else issuer.certificate.subject
    signing_key = key if issuer is None else issuer.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CA_BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    certificate = builder.sign(signing_key, hashes.SHA256())
    return _Authority(certificate=certificate, key=key)


def _authority(name: str) -> _Authority:
    """One of the three lab CAs, made once per process."""
    with _cache_lock:
        cached = _authorities.get(name)
        if cached is not None:
            return cached

        if name == PUBLIC_ROOT_NAME:
            made = _make_ca(
                _ca_name(name, "Lab Trust Services"),
                _key("public-root", 2048),
                path_length=1,
                lifetime=datetime.timedelta(days=20 * 365),
                issuer=None,
            )
        elif name == PUBLIC_ISSUING_NAME:
            made = _make_ca(
                _ca_name(name, "Lab Trust Services"),
                _key("public-issuing", 2048),
                path_length=0,
                lifetime=datetime.timedelta(days=8 * 365),
                issuer=_authority(PUBLIC_ROOT_NAME),
            )
        elif name == INTERNAL_ROOT_NAME:
            # Active Directory Certificate Services names its CA under the domain.
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "local"),
                    x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "contoso"),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
            made = _make_ca(
                subject,
                _key("internal-root", 2048),
                path_length=0,
                lifetime=datetime.timedelta(days=15 * 365),
                issuer=None,
            )
        else:
            raise ValueError(f"no lab certificate authority named {name!r}")
        _authorities[name] = made
        return made


def _subject_alternative_name(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


# AlgorithmIdentifier sha1WithRSAEncryption (1.2.840.113549.1.1.5) with NULL parameters.
_SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_element(data: bytes, offset: int) -> tuple[int, int]:
    """(start of content, end) of the DER element at offset; single-byte tags only."""
    first = data[offset + 1]
    if first < 0x80:
        return offset + 2, offset + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    start = offset + 2 + count
    return start, start + length


def _resign_with_sha1(
    certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> x509.Certificate:
    """The same certificate signed with SHA-1.

    cryptography refuses SHA-1 in its certificate builder, yet SHA-1 certificates are
    still met on old Exchange servers (the install-time certificate of Exchange 2016 is
    one), so the TBSCertificate's signature algorithm is swapped and signed by hand.
    """
    tbs = certificate.tbs_certificate_bytes
    content_start, _ = _der_element(tbs, 0)
    _, version_end = _der_element(tbs, content_start)
    _, serial_end = _der_element(tbs, version_end)
    _, algorithm_end = _der_element(tbs, serial_end)
    content = tbs[content_start:serial_end] + _SHA1_WITH_RSA + tbs[algorithm_end:]
    new_tbs = _der(0x30, content)

    signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA1())
    bit_string = _der(0x03, b"\x00" + signature)
    return x509.load_der_x509_certificate(
        _der(0x30, new_tbs + _SHA1_WITH_RSA + bit_string)
    )


@dataclass(frozen=True)
class _LeafSpec:
    names: tuple[str, ...]
    key_bits: int = 2048
    sha1_signature: bool = False
    not_before_ago: datetime.timedelta = LEAF_BACKDATE
    lifetime: datetime.timedelta = LEAF_LIFETIME


def _make_leaf(
    spec: _LeafSpec, key: rsa.RSAPrivateKey, issuer: _Authority | None
) -> x509.Certificate:
    """A TLS server certificate; self-signed (Exchange style) when issuer is None."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.names[0])])
    not_before = _now() - spec.not_before_ago
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + spec.lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(_subject_alternative_name(spec.names), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    signing_key = key if issuer is None else issuer.key
    certificate = builder.sign(signing_key, hashes.SHA256())
    if spec.sha1_signature:
        certificate = _resign_with_sha1(certificate, signing_key)
    return certificate


@dataclass(frozen=True)
class _Issued:
    chain: tuple[x509.Certificate, ...]
    key: rsa.RSAPrivateKey
    min_security_level: int


def _public_leaf(spec: _LeafSpec, *, send_intermediate: bool = True) -> _Issued:
    issuing = _authority(PUBLIC_ISSUING_NAME)
    key = _key("leaf", spec.key_bits)
    leaf = _make_leaf(spec, key, issuing)
    chain = (leaf, issuing.certificate) if send_intermediate else (leaf,)
    weak = spec.key_bits < 2048 or spec.sha1_signature
    return _Issued(
        chain=chain,
        key=key,
        min_security_level=WEAK_SECURITY_LEVEL if weak else DEFAULT_SECURITY_LEVEL,
    )


def _good(host: str) -> _Issued:
    return _public_leaf(_LeafSpec(names=(host,)))


def _expiring_soon(host: str) -> _Issued:
    # A full-length certificate near its end, as an admin would really meet one.
    spec = _LeafSpec(
        names=(host,),
        not_before_ago=LEAF_LIFETIME - datetime.timedelta(days=12),
    )
    return _public_leaf(spec)


def _self_signed(host: str) -> _Issued:
    # Exchange names its install-time certificate after the server, never the
    # published host; the requested host is deliberately absent.
    spec = _LeafSpec(
        names=(EXCHANGE_SERVER_NAME, f"{EXCHANGE_SERVER_NAME}.{EXCHANGE_AD_DOMAIN}"),
        lifetime=SELF_SIGNED_LIFETIME,
    )
    key = _key("self-signed", spec.key_bits)
    return _Issued(
        chain=(_make_leaf(spec, key, issuer=None),),
        key=key,
        min_security_level=DEFAULT_SECURITY_LEVEL,
    )


def _expired(host: str) -> _Issued:
    spec = _LeafSpec(
        names=(host,),
        not_before_ago=datetime.timedelta(days=400),
        lifetime=datetime.timedelta(days=397),
    )
    return _public_leaf(spec)


def _wrong_name(host: str) -> _Issued:
    return _public_leaf(_LeafSpec(names=(FOREIGN_NAME,)))


def _missing_intermediate(host: str) -> _Issued:
    return _public_leaf(_LeafSpec(names=(host,)), send_intermediate=False)


def _rsa1024(host: str) -> _Issued:
    return _public_leaf(_LeafSpec(names=(host,), key_bits=1024))


def _sha1(host: str) -> _Issued:
    return _public_leaf(_LeafSpec(names=(host,), sha1_signature=True))


def _internal_ca(host: str) -> _Issued:
    root = _authority(INTERNAL_ROOT_NAME)
    key = _key("leaf", 2048)
    leaf = _make_leaf(_LeafSpec(names=(host,)), key, root)
    # Windows servers commonly send the enterprise root along with the leaf.
    return _Issued(
        chain=(leaf, root.certificate),
        key=key,
        min_security_level=DEFAULT_SECURITY_LEVEL,
    )


_VARIANTS: dict[str, Callable[[str], _Issued]] = {
    "good": _good,
    "expiring_soon": _expiring_soon,
    "self_signed": _self_signed,
    "expired": _expired,
    "wrong_name": _wrong_name,
    "missing_intermediate": _missing_intermediate,
    "rsa1024": _rsa1024,
    "sha1": _sha1,
    "internal_ca": _internal_ca,
}


def _pem(certificates: tuple[x509.Certificate, ...]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _file_stem(variant: str, host: str) -> str:
    return f"{variant}-{re.sub(r'[^a-z0-9.-]', '_', host.lower())}"


class LabPki:
    """The lab's CAs written to a directory, and server credentials on demand."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

        self.public_root_bundle = self.directory / "public-root.pem"
        self.public_root_bundle.write_bytes(
            _pem((_authority(PUBLIC_ROOT_NAME).certificate,))
        )
        self.internal_root_bundle = self.directory / "internal-root.pem"
        self.internal_root_bundle.write_bytes(
            _pem((_authority(INTERNAL_ROOT_NAME).certificate,))
        )
        self._issued: dict[tuple[str, str], ServerCredentials] = {}
        self._lock = threading.Lock()

    def server_credentials(self, variant: str, host: str) -> ServerCredentials:
        """Chain and key files for `variant` as served by `host`; made once each."""
        make = _VARIANTS.get(variant)
        if make is None:
            raise ValueError(
                f"unknown certificate variant {variant!r}; "
                f"known: {', '.join(CERTIFICATE_VARIANTS)}"
            )

        with self._lock:
            cached = self._issued.get((variant, host))
            if cached is not None:
                return cached

            issued = make(host)
            stem = _file_stem(variant, host)
            chain_pem = self.directory / f"{stem}-chain.pem"
            chain_pem.write_bytes(_pem(issued.chain))
            key_pem = self.directory / f"{stem}-key.pem"
            key_pem.touch(mode=0o600)
            key_pem.write_bytes(
                issued.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            credentials = ServerCredentials(
                chain_pem=chain_pem,
                key_pem=key_pem,
                min_security_level=issued.min_security_level,
            )
            self._issued[(variant, host)] = credentials
            logger.debug(
                "issued %s certificate for %s: %d certificate(s) in %s",
                variant,
                host,
                len(issued.chain),
                chain_pem,
            )
            return credentials
