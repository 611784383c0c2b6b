"""Reachability and certificate probes: DNS, TCP, TLS and the chain the server sends."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.nameserver
import dns.resolver
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    padding,
    rsa,
)
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ewsready.facts import (
    CertificateFacts,
    CertificateInfo,
    ConnectAttempt,
    DnsAnswer,
    Reachability,
)
from ewsready.settings import Resolver

log = logging.getLogger(__name__)

DOCUMENTATION = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
TLS_NAMES = {
    "TLSv1": "TLS 1.0",
    "TLSv1.1": "TLS 1.1",
    "TLSv1.2": "TLS 1.2",
    "TLSv1.3": "TLS 1.3",
}


# --- DNS ----------------------------------------------------------------------------


def resolve(host: str, resolvers: Sequence[Resolver], timeout: float) -> DnsAnswer:
    """A and AAAA records for host through the given resolvers only."""
    names = tuple(f"{r.address}:{r.port}" for r in resolvers)
    try:
        ipaddress.ip_address(host)
        return DnsAnswer(host, names, (host,), literal=True)
    except ValueError:
        pass

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [
        dns.nameserver.Do53Nameserver(r.address, r.port) for r in resolvers
    ]
    resolver.timeout = timeout
    resolver.lifetime = timeout

    addresses: list[str] = []
    cnames: list[str] = []
    for rdtype in ("A", "AAAA"):
        started = time.monotonic()
        try:
            answer = resolver.resolve(host, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            log.debug("dns %s %s: NXDOMAIN via %s", host, rdtype, names)
            return DnsAnswer(
                host, names, (), error="the name does not exist (NXDOMAIN)"
            )
        except dns.resolver.NoAnswer:
            log.debug("dns %s %s: no answer", host, rdtype)
            continue
        except dns.resolver.NoNameservers:
            log.debug("dns %s %s: every resolver failed", host, rdtype)
            return DnsAnswer(
                host,
                names,
                (),
                error=f"every resolver ({', '.join(names)}) failed to answer",
                resolver_failed=True,
            )
        except dns.exception.Timeout:
            log.debug("dns %s %s: timed out", host, rdtype)
            # One silent resolver set is enough: asking again for AAAA would double the wait.
            return DnsAnswer(
                host,
                names,
                (),
                error=f"no answer from {', '.join(names)} within {timeout:g} s",
                resolver_failed=True,
            )
        log.debug(
            "dns %s %s via %s: %s in %.3f s",
            host,
            rdtype,
            names,
            [r.to_text() for r in answer],
            time.monotonic() - started,
        )
        addresses.extend(r.to_text() for r in answer)
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.CNAME:
                cnames.extend(r.target.to_text().rstrip(".") for r in rrset)

    if addresses:
        return DnsAnswer(
            host, names, tuple(dict.fromkeys(addresses)), tuple(dict.fromkeys(cnames))
        )
    return DnsAnswer(host, names, (), tuple(cnames), error="it has no A or AAAA record")


def address_kind(address: str, loopback_is_public: bool = False) -> str:
    """'global', or what keeps the address off the internet."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return "global" if loopback_is_public else "loopback"
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "shared (CGNAT)"
    if any(ip in net for net in DOCUMENTATION if net.version == ip.version):
        return "documentation (reserved)"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "reserved"
    return "global"


# --- TCP and TLS --------------------------------------------------------------------


def _observing_context() -> ssl.SSLContext:
    """A client context that completes any handshake, so weak certificates are seen."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The DER certificates exactly as the server sent them (leaf first)."""
    public = getattr(tls, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:
        return [bytes(c) for c in public()]
    import _ssl

    return [
        c.public_bytes(_ssl.ENCODING_DER) for c in tls._sslobj.get_unverified_chain()
    ]


def connect(
    host: str,
    address: str,
    port: int,
    timeout: float,
) -> tuple[ConnectAttempt, list[bytes], str | None]:
    """TCP then TLS to one address; returns the attempt, the chain and the cipher."""
    started = time.monotonic()
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        reason = (
            "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        )
        log.debug("tcp %s [%s]:%s failed: %s", host, address, port, reason)
        return (
            ConnectAttempt(
                address,
                port,
                False,
                error=f"TCP: {reason}",
                seconds=time.monotonic() - started,
            ),
            [],
            None,
        )
    try:
        with _observing_context().wrap_socket(raw, server_hostname=host) as tls:
            version = TLS_NAMES.get(tls.version() or "", tls.version())
            chain = _unverified_chain(tls)
            cipher = tls.cipher()[0] if tls.cipher() else None
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        log.debug("tls %s [%s]:%s failed: %s", host, address, port, exc)
        return (
            ConnectAttempt(
                address,
                port,
                True,
                False,
                error=f"TLS: {exc}",
                seconds=time.monotonic() - started,
            ),
            [],
            None,
        )
    seconds = time.monotonic() - started
    log.debug("tls %s [%s]:%s %s in %.3f s", host, address, port, version, seconds)
    return (
        ConnectAttempt(address, port, True, True, version, seconds=seconds),
        chain,
        cipher,
    )


def probe_reachability(
    host: str,
    port: int,
    resolvers: Sequence[Resolver],
    timeout: float,
    lab: bool,
) -> tuple[Reachability, dict[str, tuple[list[bytes], str | None]]]:
    """Resolve, then connect to every global address; only loopback in lab mode.

    Returns the chain (and cipher) each address sent: behind round-robin DNS or a load
    balancer, every front end must present a good certificate.
    """
    answer = resolve(host, resolvers, timeout)
    attempts: list[ConnectAttempt] = []
    chains: dict[str, tuple[list[bytes], str | None]] = {}
    for address in answer.addresses:
        kind = address_kind(address, loopback_is_public=lab)
        if kind != "global":
            attempts.append(
                ConnectAttempt(
                    address,
                    port,
                    None,
                    skipped=f"{kind} address: the internet cannot reach it",
                )
            )
            continue
        if lab and not ipaddress.ip_address(address).is_loopback:
            attempts.append(
                ConnectAttempt(
                    address, port, None, skipped="lab mode connects to loopback only"
                )
            )
            continue
        attempt, sent, used_cipher = connect(host, address, port, timeout)
        attempts.append(attempt)
        if sent:
            chains[address] = (sent, used_cipher)
    reach = Reachability(host, port, answer, tuple(attempts), loopback_is_public=lab)
    return reach, chains


# --- certificates -------------------------------------------------------------------


def _key(cert: x509.Certificate) -> tuple[str, int]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether issuer's key made cert's signature, whatever the hash (SHA-1 included:
    old self-signed Exchange certificates use it, and they are still self-signed)."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        pass
    if cert.issuer != issuer.subject or cert.signature_hash_algorithm is None:
        return False
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(
                cert.signature,
                cert.tbs_certificate_bytes,
                padding.PKCS1v15(),
                cert.signature_hash_algorithm,
            )
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(
                cert.signature,
                cert.tbs_certificate_bytes,
                ec.ECDSA(cert.signature_hash_algorithm),
            )
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def describe(der: bytes) -> CertificateInfo:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    key_type, key_bits = _key(cert)
    algorithm = cert.signature_hash_algorithm
    self_issued = cert.subject == cert.issuer
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=names,
        key_type=key_type,
        key_bits=key_bits,
        signature_hash=algorithm.name if algorithm else None,
        self_issued=self_issued,
        self_signed=self_issued and _signed_by(cert, cert),
        is_ca=is_ca,
        sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
        thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
    )


def load_store(bundles: Sequence[Path]) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    for bundle in bundles:
        roots.extend(x509.load_pem_x509_certificates(bundle.read_bytes()))
    return roots


def verify_chain(
    host: str,
    chain: Sequence[bytes],
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
) -> str | None:
    """None when the sent chain verifies for host against roots; else the reason."""
    certs = [x509.load_der_x509_certificate(d) for d in chain]
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(now)
        .build_server_verifier(x509.DNSName(host))
    )
    try:
        verifier.verify(certs[0], certs[1:])
    except VerificationError as exc:
        return str(exc)
    except ValueError as exc:
        return f"cannot verify: {exc}"
    return None


def certificate_facts(
    host: str,
    address: str,
    port: int,
    chain: Sequence[bytes],
    tls_version: str | None,
    cipher: str | None,
    roots: Sequence[x509.Certificate],
    store_name: str,
    now: dt.datetime | None = None,
) -> CertificateFacts:
    now = now or dt.datetime.now(dt.UTC)
    infos = tuple(describe(d) for d in chain)
    certs = [x509.load_der_x509_certificate(d) for d in chain]
    last = certs[-1]
    issuer_in_store = any(
        root.subject == last.issuer and _signed_by(last, root) for root in roots
    ) or any(
        root.fingerprint(hashes.SHA256()) == last.fingerprint(hashes.SHA256())
        for root in roots
    )
    error = verify_chain(host, chain, roots, now)
    log.debug("certificate %s: %d sent, verify: %s", host, len(chain), error or "ok")
    return CertificateFacts(
        host=host,
        address=address,
        port=port,
        chain=infos,
        tls_version=tls_version,
        cipher=cipher,
        trust_store=store_name,
        verified=error is None,
        verify_error=error,
        issuer_in_store=issuer_in_store,
        last_issuer_sent=infos[-1].self_issued,
        checked_at=now,
    )
