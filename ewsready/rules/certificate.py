"""Certificate: public root, whole chain sent, right name, valid dates, strong crypto."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

from ewsready.facts import Blocked, CertificateFacts, CertificateInfo
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked, listing

EXPIRY_WARNING_DAYS = 30
MIN_KEY_BITS = {"RSA": 2048, "EC": 256, "DSA": 2048}
WEAK_HASHES = {"md5", "sha1"}
CURRENT_TLS = {"TLS 1.2", "TLS 1.3"}

Facts = CertificateFacts | Blocked


def _cn(name: str) -> str:
    for part in name.split(","):
        if part.startswith("CN="):
            return part[3:]
    return name


def request_names(host: str) -> list[str]:
    """Names a new certificate should carry: the EWS host and the domain's autodiscover."""
    labels = host.split(".")
    names = [host]
    if len(labels) > 2:
        names.append("autodiscover." + ".".join(labels[1:]))
    return names


def request_file(name: str) -> str:
    """Where a certificate request for the EWS host name goes: one file per name, so
    every finding about that name's certificate writes (and shares) the same one."""
    return f"C:\\certreq\\{name}.req"


def request_values(host: str) -> dict[str, object]:
    """Values for the certificate request commands."""
    return {
        "host": host,
        "subject": f"CN={host}",
        "names": request_names(host),
        "request_file": request_file(host),
    }


def names_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.casefold().rstrip("."), host.casefold().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def _leaf_names(leaf: CertificateInfo) -> tuple[str, ...]:
    """Names clients match: the subject alternative names only (the CN is ignored)."""
    return leaf.dns_names


def _incomplete(facts: CertificateFacts) -> bool:
    return not facts.last_issuer_sent and not facts.issuer_in_store


def _expired(facts: CertificateFacts) -> bool:
    leaf = facts.leaf
    return (
        leaf is not None and not leaf.not_before <= facts.checked_at <= leaf.not_after
    )


def weaknesses(facts: CertificateFacts) -> list[str]:
    """Each key or signature in the sent chain that current clients refuse."""
    problems = []
    for position, cert in enumerate(facts.chain):
        who = (
            "the certificate"
            if position == 0
            else f"the issuing certificate {_cn(cert.subject)!r}"
        )
        minimum = MIN_KEY_BITS.get(cert.key_type)
        if minimum and cert.key_bits < minimum:
            problems.append(
                f"{who} has a {cert.key_type} {cert.key_bits}-bit key (at least "
                f"{minimum} needed)"
            )
        if not cert.self_signed and (cert.signature_hash or "") in WEAK_HASHES:
            problems.append(f"{who} is signed with {cert.signature_hash.upper()}")
    return problems


def _wrong_name(facts: CertificateFacts) -> bool:
    leaf = facts.leaf
    return leaf is not None and not any(
        names_match(n, facts.host) for n in _leaf_names(leaf)
    )


PINNED_NOTE = "The signed-in checks ran on the certificate pinned in ews.fingerprint."


def fingerprint_text(sha256: str) -> str:
    """'AB:CD:...', as certificate viewers and the ews.fingerprint setting show it."""
    return ":".join(sha256[i : i + 2] for i in range(0, len(sha256), 2)).upper()


def chains_to_public_root(facts: Facts) -> Result:
    """A chain to a public root; and, when ews.fingerprint pins a certificate, that
    it is the one presented (the untrusted chain is still reported: the calendar
    service does not know the pin)."""
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    findings = _pin_mismatch(facts) + _public_root(facts)
    if facts.pin_matches:
        findings = [
            (
                replace(f, sentence=f"{f.sentence} {PINNED_NOTE}")
                if f.severity != Severity.BLOCKED
                else f
            )
            for f in findings
        ]
    return findings


def _pin_mismatch(facts: CertificateFacts) -> Result:
    if facts.pin_matches is not False:
        return []
    leaf = facts.leaf
    assert facts.pinned is not None
    presented = (
        f"presented: SHA-256 {fingerprint_text(leaf.sha256)} ({leaf.subject}, issued "
        f"by {leaf.issuer}, valid to {leaf.not_after:%Y-%m-%d})"
        if leaf is not None
        else "presented: no certificate"
    )
    return [
        Finding(
            Severity.FAIL,
            f"The certificate on {facts.host} is not the one pinned in "
            "ews.fingerprint, so the audit did not send the password to it.",
            evidence=(presented, f"pinned: SHA-256 {fingerprint_text(facts.pinned)}"),
            fix="certificate_pin_mismatch",
            values={
                "host": facts.host,
                "presented": fingerprint_text(leaf.sha256) if leaf else "none",
            },
            subjects=(facts.host,),
        )
    ]


def _public_root(facts: CertificateFacts) -> Result:
    leaf = facts.leaf
    if facts.verified or leaf is None:
        return []
    values = request_values(facts.host)
    if leaf.self_signed:
        return [
            Finding(
                Severity.FAIL,
                f"The certificate on {facts.host} is self-signed "
                f"({_cn(leaf.subject)}); no public root vouches for it.",
                evidence=(
                    f"subject {leaf.subject}",
                    f"issuer {leaf.issuer}",
                    f"names {listing(leaf.dns_names) or 'none'}",
                    f"trust store: {facts.trust_store}",
                ),
                fix="certificate_self_signed",
                values=values,
                subjects=(facts.host,),
            )
        ]
    if facts.last_issuer_sent and not facts.issuer_in_store:
        root = facts.chain[-1]
        return [
            Finding(
                Severity.FAIL,
                f"The certificate on {facts.host} chains to {_cn(root.subject)!r}, "
                "which is not a public root.",
                evidence=tuple(
                    f"sent: {c.subject} (issued by {c.issuer})" for c in facts.chain
                )
                + (f"trust store: {facts.trust_store}",),
                fix="certificate_untrusted_root",
                values={**values, "root": _cn(root.subject)},
                subjects=(facts.host,),
            )
        ]
    if _incomplete(facts):
        return from_blocked(
            Blocked(
                f"{facts.host} does not send the issuer "
                f"{_cn(facts.chain[-1].issuer)!r}, so the root cannot be traced",
                "certificate",
            )
        )
    if _expired(facts) or _wrong_name(facts) or weaknesses(facts):
        return (
            []
        )  # reaches a public root; the other certificate checks say what is wrong
    return [
        Finding(
            Severity.FAIL,
            f"The certificate chain on {facts.host} does not verify: "
            f"{facts.verify_error}.",
            evidence=tuple(f"sent: {c.subject}" for c in facts.chain),
            fix="certificate_untrusted_root",
            values={**values, "root": _cn(facts.chain[-1].issuer)},
            subjects=(facts.host,),
        )
    ]


def sends_whole_chain(facts: Facts) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if not facts.chain or facts.chain[0].self_signed or not _incomplete(facts):
        return []
    last = facts.chain[-1]
    issuer = _cn(last.issuer)
    if len(facts.chain) == 1:
        sentence = (
            f"{facts.host} sends only its own certificate; "
            f"its issuer {issuer!r} is not sent."
        )
    else:
        sentence = (
            f"{facts.host} sends {len(facts.chain)} certificates but not {issuer!r}, "
            "the issuer of the last one."
        )
    return [
        Finding(
            Severity.FAIL,
            sentence,
            evidence=tuple(
                f"sent: {c.subject} (issued by {c.issuer})" for c in facts.chain
            )
            + (
                f"{issuer!r} is not a root in the trust store ({facts.trust_store}); "
                "if it is your own CA, the certificate must be replaced by a public "
                "one",
            ),
            fix="certificate_incomplete_chain",
            values={"issuer": issuer},
            subjects=(facts.host,),
        )
    ]


def names_the_host(facts: Facts) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if not _wrong_name(facts):
        return []
    leaf = facts.leaf
    assert leaf is not None
    return [
        Finding(
            Severity.FAIL,
            (
                f"The certificate on {facts.host} is for {listing(leaf.dns_names)}, "
                f"not {facts.host}."
                if leaf.dns_names
                else f"The certificate on {facts.host} has no subject alternative names "
                f"(only {leaf.subject}); clients match names there only."
            ),
            evidence=(
                f"subject {leaf.subject}",
                f"subject alternative names: {listing(leaf.dns_names) or 'none'}",
            ),
            fix="certificate_wrong_name",
            values=request_values(facts.host),
            subjects=(facts.host,),
        )
    ]


def _renewal_file(facts: CertificateFacts) -> str:
    return request_file(facts.host)


def within_validity(facts: Facts) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    leaf = facts.leaf
    if leaf is None:
        return []
    now = facts.checked_at
    dates = (
        f"valid from {leaf.not_before:%Y-%m-%d %H:%M} UTC to "
        f"{leaf.not_after:%Y-%m-%d %H:%M} UTC",
        f"thumbprint {leaf.thumbprint}",
    )
    if now > leaf.not_after:
        days = (now - leaf.not_after).days
        return [
            Finding(
                Severity.FAIL,
                f"The certificate on {facts.host} expired on "
                f"{leaf.not_after:%Y-%m-%d} ({days} days ago).",
                evidence=dates,
                fix="certificate_expired",
                values={
                    "thumbprint": leaf.thumbprint,
                    "request_file": _renewal_file(facts),
                },
                subjects=(facts.host,),
            )
        ]
    if now < leaf.not_before:
        return [
            Finding(
                Severity.FAIL,
                f"The certificate on {facts.host} is not valid before "
                f"{leaf.not_before:%Y-%m-%d %H:%M} UTC.",
                evidence=dates,
                fix="certificate_expired",
                values={
                    "thumbprint": leaf.thumbprint,
                    "request_file": _renewal_file(facts),
                },
                subjects=(facts.host,),
            )
        ]
    left = leaf.not_after - now
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return [
            Finding(
                Severity.WARN,
                f"The certificate on {facts.host} expires on "
                f"{leaf.not_after:%Y-%m-%d}, "
                f"in {math.ceil(left.total_seconds() / 86400)} days.",
                evidence=dates,
                fix="certificate_expiring",
                values={
                    "thumbprint": leaf.thumbprint,
                    "request_file": _renewal_file(facts),
                    "not_after": f"{leaf.not_after:%Y-%m-%d %H:%M} UTC",
                },
                subjects=(facts.host,),
            )
        ]
    return []


def strong_key_and_signature(facts: Facts) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    problems = weaknesses(facts)
    if not problems:
        return []
    return [
        Finding(
            Severity.FAIL,
            f"The certificate chain on {facts.host} is too weak: {listing(problems)}.",
            evidence=tuple(
                f"{c.subject}: {c.key_type} {c.key_bits} bits, signed with "
                f"{c.signature_hash}"
                for c in facts.chain
            ),
            fix="certificate_weak",
            values=request_values(facts.host),
            subjects=(facts.host,),
        )
    ]


def current_tls(facts: Facts) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if facts.tls_version in CURRENT_TLS:
        return []
    return [
        Finding(
            Severity.FAIL,
            f"{facts.host} negotiated "
            f"{facts.tls_version or 'an unknown TLS version'}; TLS 1.2 or later is "
            "needed.",
            evidence=(f"cipher {facts.cipher}",),
            fix="tls_outdated",
            values={"host": facts.host},
            subjects=(facts.host,),
        )
    ]
