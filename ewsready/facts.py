"""Facts: what the probes saw, typed and immutable.

A probe that could not read something says why in the fact itself (an `error` or a
`Blocked` value); no fact is ever an empty list standing in for "unknown".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Blocked:
    """A probe was not run because something it depends on failed first."""

    cause: str  # the sentence naming the root cause, e.g. "mail.x does not resolve"
    check: str  # the marker of the check that reports that cause


@dataclass(frozen=True)
class Unavailable:
    """A source of facts that could not be read at all, and why (no settings, failed
    session, a file missing from an export)."""

    reason: str


# Codes the EWS probe gives when the server, not the account, failed the request; the
# fact's error then says what the server did ("EWS at URL sent no answer within 2 s").
WIRE_CODES = frozenset(
    {
        "NoAnswer",
        "AnswerTooSlow",
        "ConnectionReset",
        "NoConnection",
        "AnswerTooLarge",
        "NotSoap",
        "EmptyAnswer",
        "MalformedXml",
        "DocumentType",
    }
)
BUSY_CODES = frozenset({"ErrorServerBusy", "ServiceUnavailable"})


def server_failed(code: str) -> bool:
    """Whether an EWS error code says the server (not the account) failed."""
    return code in WIRE_CODES or code in BUSY_CODES


# --- reachability -----------------------------------------------------------------


@dataclass(frozen=True)
class DnsAnswer:
    host: str
    resolvers: tuple[str, ...]
    addresses: tuple[str, ...]  # A and AAAA, in answer order
    cnames: tuple[str, ...] = ()  # the CNAME chain followed, if any
    error: str | None = None  # "the name does not exist (NXDOMAIN)", ...
    # The resolvers did not answer: a problem where the audit runs, not in the zone.
    resolver_failed: bool = False
    literal: bool = False  # the URL names an IP address; nothing was resolved


@dataclass(frozen=True)
class ConnectAttempt:
    address: str
    port: int
    tcp_ok: bool | None  # None: not attempted (see skipped)
    tls_ok: bool | None = None
    tls_version: str | None = None
    error: str | None = None
    skipped: str | None = None  # why no connection was attempted to this address
    seconds: float = 0.0


@dataclass(frozen=True)
class Reachability:
    host: str
    port: int
    dns: DnsAnswer
    attempts: tuple[ConnectAttempt, ...]
    loopback_is_public: bool = (
        False  # lab mode: loopback stands in for public addresses
    )

    @property
    def reachable_address(self) -> str | None:
        for attempt in self.attempts:
            if attempt.tcp_ok and attempt.tls_ok:
                return attempt.address
        return None


# --- certificate ------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    key_type: str  # "RSA", "EC", "Ed25519", ...
    key_bits: int
    signature_hash: str | None  # "sha256", "sha1", ...
    self_issued: bool  # subject == issuer
    self_signed: bool  # and its own key verifies the signature
    is_ca: bool
    sha256: str
    thumbprint: str  # SHA-1, as Get-ExchangeCertificate shows it


@dataclass(frozen=True)
class CertificateFacts:
    host: str
    address: str
    port: int
    chain: tuple[CertificateInfo, ...]  # exactly as the server sent it, leaf first
    tls_version: str | None
    cipher: str | None
    trust_store: str  # "Mozilla (certifi)", "lab public root", "+ ca_bundle x"
    verified: bool  # chain + store verify for the host name
    verify_error: str | None
    issuer_in_store: bool  # the last sent certificate's issuer is a trusted root
    last_issuer_sent: bool  # the last sent certificate is self-issued (a root was sent)
    checked_at: dt.datetime
    error: str | None = None
    # The SHA-256 the settings pin (ews.fingerprint), 64 hex digits; None: no pin.
    pinned: str | None = None

    @property
    def leaf(self) -> CertificateInfo | None:
        return self.chain[0] if self.chain else None

    @property
    def pin_matches(self) -> bool | None:
        """None without a pin; else whether the leaf is the pinned certificate."""
        if self.pinned is None:
            return None
        return self.leaf is not None and self.leaf.sha256.upper() == self.pinned


# --- HTTP behaviour of the URL ------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    """An unauthenticated request to a URL, as the calendar service would make it."""

    url: str
    method: str
    status: int | None
    content_type: str | None = None
    location: str | None = None
    auth_schemes: tuple[
        str, ...
    ] = ()  # from WWW-Authenticate, as the server spells them
    html_title: str | None = None
    has_password_form: bool = False
    error: str | None = None


@dataclass(frozen=True)
class UrlFacts:
    given: str
    given_answer: HttpAnswer | None
    # https://HOST/EWS/Exchange.asmx, probed when the given URL is not that.
    candidate: str | None = None
    candidate_answer: HttpAnswer | None = None


# --- EWS with credentials -------------------------------------------------------------


@dataclass(frozen=True)
class LogonFacts:
    url: str
    username: str
    ok: bool
    http_status: int | None = None
    error_code: str | None = None  # "Unauthorized", "ErrorServerBusy", "timeout", ...
    error: str | None = None
    server_build: str | None = None  # "15.1.2507.39" from ServerVersionInfo
    schema_version: str | None = None
    auth_schemes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailboxRead:
    address: str  # as invited
    ok: bool
    code: str  # "NoError" or the EWS error code
    message: str = ""
    read_as: str | None = (
        None  # the primary address used, when the invited one was an alias
    )
    can_write: bool | None = (
        None  # delegate mode: EffectiveRights CreateContents/Modify
    )
    seconds: float = 0.0


@dataclass(frozen=True)
class MailboxAccessFacts:
    access: str  # "impersonation" or "delegate"
    reads: tuple[MailboxRead, ...]
    requests: int  # EWS requests spent
    busy_waits: int = 0
    error: str | None = None
    unresolved: tuple[str, ...] = ()  # invited addresses no mailbox has; not read
    url: str = ""  # the EWS URL read from


@dataclass(frozen=True)
class AddressResolution:
    invited: str
    found: bool
    primary: str | None = None
    display_name: str | None = None
    code: str = "NoError"
    message: str = ""


@dataclass(frozen=True)
class AddressFacts:
    resolutions: tuple[AddressResolution, ...]
    error: str | None = None
