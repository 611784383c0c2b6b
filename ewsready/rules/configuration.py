"""Exchange's own configuration, read through the shell or from an export."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from ewsready.builds import lookup, parse_build
from ewsready.facts import Blocked, HttpAnswer, Unavailable
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked, listing, plural
from ewsready.rules.certificate import (
    EXPIRY_WARNING_DAYS,
    names_match,
    request_file,
    request_values,
)
from ewsready.rules.ews_url import ews_url_for
from ewsready.shellfacts import (
    AccountInfo,
    ExchangeCertificateInfo,
    ExchangeServerInfo,
    ReadErrors,
    RoleAssignmentInfo,
    ScopeMembers,
    SendAsEntry,
    VirtualDirectoryInfo,
)

Servers = Sequence[ExchangeServerInfo] | Unavailable | Blocked
Vdirs = Sequence[VirtualDirectoryInfo] | Unavailable | Blocked
Certificates = Sequence[ExchangeCertificateInfo] | Unavailable | Blocked


def _unavailable(facts: object, what: str) -> Result | None:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if isinstance(facts, Unavailable):
        return [Finding(Severity.UNKNOWN, f"{what} could not be read: {facts.reason}.")]
    if not facts:
        return [Finding(Severity.UNKNOWN, f"{what}: the shell returned nothing.")]
    return None


def _because(reason: str) -> str:
    return reason.strip().rstrip(".")


def _unread_mailboxes(
    what: str, targets: Sequence[str], errors: ReadErrors | None
) -> tuple[set[str], list[Finding]]:
    """The target mailboxes a read over all mailboxes failed on (case-folded), and a
    could-not-evaluate finding naming each with the reason Exchange gave."""
    if not errors:
        return set(), []
    unread = [
        (t, errors.mailboxes[t.casefold()])
        for t in targets
        if t.casefold() in errors.mailboxes
    ]
    if not unread:
        return set(), []
    if len(unread) == 1:
        target, why = unread[0]
        sentence = (
            f"The {what} of {target} could not be read, because "
            f"{_because(why.reason)}."
        )
    else:
        sentence = (
            f"The {what} of {len(unread)} of {len(targets)} target mailboxes could not "
            f"be read: {listing(f'{t} ({_because(w.reason)})' for t, w in unread)}."
        )
    finding = Finding(
        Severity.UNKNOWN,
        sentence,
        evidence=tuple(f"{t}: {w.reason}" for t, w in unread[:200]),
        subjects=tuple(t for t, _ in unread),
    )
    return {t.casefold() for t, _ in unread}, [finding]


def _unattributed(
    what: str, errors: ReadErrors | None, failing: Sequence[str]
) -> list[Finding]:
    """Errors that name no mailbox: they cannot make a mailbox pass, but a mailbox
    reported as failing may be one that was not read."""
    if not errors or not errors.unattributed:
        return []
    first = errors.unattributed[0]
    count = len(errors.unattributed)
    said = (
        f"{count} error{'s' if count > 1 else ''} that name{'' if count > 1 else 's'}"
    )
    if failing:
        return [
            Finding(
                Severity.UNKNOWN,
                f"Reading the {what} also gave {said} no target mailbox ({first}); "
                f"some of {listing(failing)} may have gone unread rather than lack "
                "the right.",
                evidence=tuple(str(e) for e in errors.unattributed[:20]),
            )
        ]
    return [
        Finding(
            Severity.INFO,
            f"Reading the {what} also gave {said} no target mailbox ({first}); "
            "every target mailbox was read.",
            evidence=tuple(str(e) for e in errors.unattributed[:20]),
        )
    ]


def _no_targets(what: str) -> Result:
    """A check over no mailbox has not checked anything: say so, never pass."""
    return [
        Finding(
            Severity.UNKNOWN,
            f"No target mailbox to check {what} on: the audit was given no invited "
            "mailbox that Exchange has (mailboxes.invited in the tenant file, or "
            "--mailbox).",
        )
    ]


# Calendar roles that include Editor's rights (read, create, modify, delete items).
EDITOR_OR_MORE = frozenset({"editor", "publishingeditor", "owner"})


# --- version ------------------------------------------------------------------------


def servers_at_least_2013(servers: Servers) -> Result:
    problem = _unavailable(servers, "Exchange servers (Get-ExchangeServer)")
    if problem is not None:
        return problem
    findings = []
    for server in servers:
        if server.build is None:
            findings.append(
                Finding(
                    Severity.UNKNOWN,
                    f"The version of {server.name} could not be read "
                    f"({server.version_text!r}).",
                )
            )
            continue
        info = lookup(parse_build(server.build))
        if info.below_minimum:
            findings.append(
                Finding(
                    Severity.FAIL,
                    f"{server.name} runs {info.level} (build {info.text}), below the "
                    "Exchange 2013 minimum.",
                    evidence=(f"AdminDisplayVersion: {server.version_text}",),
                    fix="version_below_minimum",
                    values={"product": info.level, "build": info.text},
                    subjects=(server.name,),
                )
            )
    return findings


def servers_supported(servers: Servers, today: dt.date | None = None) -> Result:
    problem = _unavailable(servers, "Exchange servers (Get-ExchangeServer)")
    if problem is not None:
        return problem
    today = today or dt.date.today()
    findings = []
    for server in servers:
        if server.build is None:
            continue
        info = lookup(parse_build(server.build))
        if info.out_of_support(today) and info.ended is not None:
            findings.append(
                Finding(
                    Severity.WARN,
                    f"{server.name} runs {info.level} (build {info.text}), out of "
                    f"support since {info.ended:%Y-%m-%d}.",
                    evidence=(
                        f"AdminDisplayVersion: {server.version_text}",
                        f"release: {info.release.name if info.release else 'not in the table'}",
                    ),
                    fix="version_out_of_support",
                    values={
                        "product": info.level,
                        "build": info.text,
                        "ended": f"{info.ended:%Y-%m-%d}",
                    },
                    subjects=(server.name,),
                )
            )
        elif info.behind_latest(today) and info.latest is not None:
            findings.append(
                Finding(
                    Severity.WARN,
                    f"{server.name} runs {info.level} (build {info.text}), behind "
                    f"{info.latest.name} released {info.latest.date:%Y-%m-%d}.",
                    evidence=(f"AdminDisplayVersion: {server.version_text}",),
                    fix="version_out_of_support",
                    values={
                        "product": info.level,
                        "build": info.text,
                        "ended": f"{info.latest.date:%Y-%m-%d}",
                    },
                    subjects=(server.name,),
                )
            )
    return findings


# --- Basic authentication on the EWS virtual directories ------------------------------


def basic_configured(vdirs: Vdirs) -> Result:
    problem = _unavailable(
        vdirs, "EWS virtual directories (Get-WebServicesVirtualDirectory)"
    )
    if problem is not None:
        return problem
    off = [v for v in vdirs if v.basic is False]
    unknown = [v for v in vdirs if v.basic is None]
    findings = []
    if off:
        findings.append(
            Finding(
                Severity.FAIL,
                f"Basic authentication is off on {listing(v.identity for v in off)}.",
                evidence=tuple(f"{v.identity}: BasicAuthentication False" for v in off),
                fix="vdir_basic_off",
                values={
                    "identities": [v.identity for v in off],
                    "servers": sorted(
                        {v.server or v.identity.split("\\")[0] for v in off}
                    ),
                },
                subjects=tuple(v.identity for v in off),
            )
        )
    if unknown:
        findings.append(
            Finding(
                Severity.UNKNOWN,
                "BasicAuthentication could not be read on "
                f"{listing(v.identity for v in unknown)}.",
            )
        )
    return findings


def basic_configured_and_offered(vdirs: Vdirs, offered: HttpAnswer | Blocked) -> Result:
    """Configured on every directory but not offered on the wire: something in front."""
    if isinstance(vdirs, Unavailable | Blocked) or not vdirs:
        return []  # basic_configured reports that
    if isinstance(offered, Blocked) or offered.status != 401:
        return []
    configured = all(v.basic for v in vdirs)
    on_wire = any(s.casefold() == "basic" for s in offered.auth_schemes)
    if configured and not on_wire:
        host = urlsplit(offered.url).hostname or ""
        return [
            Finding(
                Severity.FAIL,
                "Basic authentication is on in every EWS virtual directory, yet "
                f"{offered.url} does not offer it: a proxy or load balancer in front of "
                f"{host} most likely replaces the sign-in methods.",
                evidence=(
                    *(f"{v.identity}: BasicAuthentication True" for v in vdirs),
                    f"WWW-Authenticate on the wire: {', '.join(offered.auth_schemes) or 'none'}",
                ),
                fix="basic_stripped_in_front",
                values={"host": host},
                subjects=(offered.url,),
            )
        ]
    return []


# --- the URL Exchange publishes -------------------------------------------------------


def _same_url(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (
        (pa.hostname or "").casefold() == (pb.hostname or "").casefold()
        and (pa.port or 443) == (pb.port or 443)
        and pa.path.rstrip("/").casefold() == pb.path.rstrip("/").casefold()
    )


def ews_url_to_publish(given_url: str, stand_in_port: int | None = None) -> str:
    """The EWS URL for the host the calendar service is given: its own URL when that
    is one, else https://HOST/EWS/Exchange.asmx (never an OWA or other page). A port
    that only stands in for 443 (the lab's) is left out, as Exchange would publish
    it."""
    proposed = ews_url_for(given_url)
    parts = urlsplit(proposed)
    if stand_in_port is not None and parts.port == stand_in_port:
        proposed = urlunsplit(parts._replace(netloc=parts.hostname or ""))
    return proposed


def external_url_published(
    vdirs: Vdirs, given_url: str | None, stand_in_port: int | None = None
) -> Result:
    """ExternalUrl set, https, /EWS/Exchange.asmx and the EWS URL of the host the
    calendar service is given. `given_url` is shown as given; `stand_in_port` is a
    port that stands in for 443 (in the lab), ignored when comparing. Without a given
    URL the public host is unknown, and no fix invents one."""
    problem = _unavailable(
        vdirs, "EWS virtual directories (Get-WebServicesVirtualDirectory)"
    )
    if problem is not None:
        return problem
    expected = ews_url_to_publish(given_url, stand_in_port) if given_url else None
    given_note: tuple[str, ...] = ()
    if given_url and stand_in_port is not None:
        given_note = (f"in the lab, port {stand_in_port} stands in for 443",)
    findings = []
    for v in vdirs:
        if not v.external_url:
            severity = Severity.WARN if v.internal_url else Severity.FAIL
            findings.append(
                Finding(
                    severity,
                    f"{v.identity} has no ExternalUrl"
                    + (
                        f"; only the InternalUrl {v.internal_url} is set."
                        if v.internal_url
                        else "."
                    ),
                    evidence=(f"InternalUrl: {v.internal_url}", "ExternalUrl: not set"),
                    fix=(
                        "external_url_missing"
                        if expected
                        else "external_url_host_unknown"
                    ),
                    values=(
                        {"identity": v.identity, "proposed": expected}
                        if expected
                        else {"identity": v.identity}
                    ),
                    subjects=(v.identity,),
                )
            )
            continue
        parts = urlsplit(v.external_url)
        if (
            parts.scheme != "https"
            or parts.path.rstrip("/").casefold() != "/ews/exchange.asmx"
        ):
            findings.append(
                Finding(
                    Severity.FAIL,
                    f"{v.identity} publishes {v.external_url}, which is not an https "
                    "/EWS/Exchange.asmx URL.",
                    evidence=(f"ExternalUrl: {v.external_url}",),
                    fix="external_url_missing",
                    values={
                        "identity": v.identity,
                        # Its own host, when no other is given: that one is public.
                        "proposed": expected or ews_url_for(v.external_url),
                    },
                    subjects=(v.identity,),
                )
            )
        elif expected and not _same_url(v.external_url, expected):
            as_given = (
                ""
                if _same_url(ews_url_for(given_url), given_url)
                else f" (whose EWS URL is {expected})"
            )
            findings.append(
                Finding(
                    Severity.WARN,
                    f"{v.identity} publishes {v.external_url}, but the calendar service "
                    f"is given {given_url}{as_given}.",
                    evidence=(
                        f"ExternalUrl: {v.external_url}",
                        f"given: {given_url}",
                        *given_note,
                    ),
                    fix="external_url_differs",
                    values={"identity": v.identity, "proposed": expected},
                    subjects=(v.identity,),
                )
            )
    return findings


# --- certificates in the servers' stores ----------------------------------------------


def _replacement(host: str | None) -> tuple[str, dict[str, object]]:
    """The fix for a certificate that has to be replaced: a request for the EWS host,
    or, when the run was not given the host, a note that no request can be named."""
    if not host:
        return "iis_certificate_host_unknown", {}
    values = request_values(host)
    return "iis_certificate_replace", {
        k: values[k] for k in ("subject", "names", "request_file")
    }


def iis_certificate(
    certificates: Certificates,
    host: str | None,
    presented_thumbprints: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> Result:
    """The certificate IIS serves (or, when the source does not say which it is, any
    certificate) must cover the EWS host, be from a public CA and be current."""
    problem = _unavailable(
        certificates, "Exchange certificates (Get-ExchangeCertificate)"
    )
    if problem is not None:
        return problem
    now = now or dt.datetime.now(dt.UTC)
    bound = [c for c in certificates if c.bound_to_iis]
    candidates = bound or [c for c in certificates if c.bound_to_iis is None]
    fix, values = _replacement(host)
    if not candidates:
        return [
            Finding(
                Severity.FAIL,
                "No Exchange certificate is bound to IIS.",
                evidence=tuple(
                    f"{c.thumbprint}: {', '.join(c.services or ())}"
                    for c in certificates
                ),
                fix=fix,
                values=values,
            )
        ]

    def problems_of(c: ExchangeCertificateInfo) -> tuple[list[str], list[str]]:
        """(what makes it unusable, what only needs attention soon)."""
        info = c.certificate
        if info is None:
            return ["could not be read (no RawData)"], []
        hard, soft = [], []
        if info.self_signed:
            hard.append("is self-signed")
        elif c.root_ca_type is not None and c.root_ca_type != "ThirdParty":
            hard.append(f"has a root that is not public (RootCAType {c.root_ca_type})")
        if host and not any(names_match(n, host) for n in info.dns_names):
            hard.append(f"does not name {host}")
        if info.not_after < now:
            hard.append(f"expired on {info.not_after:%Y-%m-%d}")
        elif (info.not_after - now).days < EXPIRY_WARNING_DAYS:
            soft.append(f"expires on {info.not_after:%Y-%m-%d}")
        if (info.signature_hash or "") in ("sha1", "md5") and not info.self_signed:
            hard.append(f"is signed with {info.signature_hash.upper()}")
        return hard, soft

    judged = {c.thumbprint: problems_of(c) for c in candidates}
    evidence = tuple(
        f"{c.server or '?'} {c.thumbprint} "
        f"({c.certificate.subject if c.certificate else 'unreadable'}; services "
        f"{', '.join(c.services) if c.services is not None else 'not in the source'}): "
        + ("; ".join(judged[c.thumbprint][0] + judged[c.thumbprint][1]) or "good")
        for c in candidates
    )

    def described(items: list[ExchangeCertificateInfo], which: int) -> str:
        """'CN=x (92E196F3…) is self-signed and expired on ...; CN=y (...) ...'"""
        return "; ".join(
            f"{c.certificate.subject if c.certificate else 'a certificate'} "
            f"({c.thumbprint[:8]}…) {listing(judged[c.thumbprint][which], limit=9)}"
            for c in items
        )

    findings: list[Finding] = []
    # Each server behind the name needs a fit certificate of its own: the load
    # balancer may send the calendar service to any of them.
    by_server: dict[str, list[ExchangeCertificateInfo]] = {}
    for c in candidates:
        by_server.setdefault(c.server or "", []).append(c)
    unfit = {
        server: items
        for server, items in by_server.items()
        if all(judged[c.thumbprint][0] for c in items)
    }
    usable = [c for c in candidates if not judged[c.thumbprint][0]]
    for server, items in unfit.items():
        on = f" on {server}" if server else ""
        if bound:
            sentence = (
                f"The certificate bound to IIS{on} is not fit for the calendar "
                f"service: {described(items, 0)}."
            )
        else:
            sentence = (
                f"No certificate in the store{on} is publicly trusted, current and "
                f"names {host or 'the EWS host'}: {described(items, 0)}."
            )
        findings.append(
            Finding(
                Severity.FAIL,
                sentence,
                evidence=evidence,
                fix=fix,
                values=values,
                subjects=tuple(c.thumbprint for c in items),
            )
        )
    if not unfit and all(judged[c.thumbprint][1] for c in usable):
        findings += _expiring_soon(usable, bool(bound), host, evidence, now)
    if bound and presented_thumbprints:
        configured = {c.thumbprint for c in bound}
        strangers = [t for t in presented_thumbprints if t.upper() not in configured]
        if strangers:
            findings.append(
                Finding(
                    Severity.WARN,
                    f"The endpoint presents a certificate ({listing(strangers)}) that is "
                    "not the one bound to IIS on the Exchange servers: something in "
                    "front terminates TLS.",
                    evidence=(*evidence, f"presented: {listing(strangers)}"),
                    subjects=tuple(strangers),
                )
            )
    return findings


def _expiring_soon(
    usable: Sequence[ExchangeCertificateInfo],
    bound: bool,
    host: str | None,
    evidence: tuple[str, ...],
    now: dt.datetime,
) -> Result:
    """Every certificate IIS could serve is good but expires soon: one warning per
    certificate, whose fix is its renewal. With the EWS host known, the renewals
    share that name's request file, so remediation.ps1 makes one request."""
    findings = []
    servers: dict[str, list[str]] = {}
    for c in usable:
        servers.setdefault(c.thumbprint, []).extend([c.server] if c.server else [])
    for thumbprint, names in servers.items():
        c = next(u for u in usable if u.thumbprint == thumbprint)
        info = c.certificate
        assert info is not None  # a certificate without RawData is not usable
        days = math.ceil((info.not_after - now).total_seconds() / 86400)
        where = f" on {listing(sorted(set(names)))}" if names else ""
        which = (
            f"bound to IIS{where}"
            if bound
            else f"in the store{where} that IIS can serve"
        )
        findings.append(
            Finding(
                Severity.WARN,
                f"The certificate {which}, {info.subject} (thumbprint {thumbprint}), "
                f"expires on {info.not_after:%Y-%m-%d}, in {plural(days, 'day')}.",
                evidence=evidence,
                fix="certificate_expiring",
                values={
                    "thumbprint": thumbprint,
                    "request_file": request_file(host or thumbprint),
                    "not_after": f"{info.not_after:%Y-%m-%d %H:%M} UTC",
                },
                subjects=(thumbprint,),
            )
        )
    return findings


# --- impersonation ------------------------------------------------------------------


def _new_assignment(upn: str, targets: Sequence[str]) -> dict[str, object]:
    """Values for the fix that creates a scoped assignment over the targets."""
    return {
        "upn": upn,
        "scope": "CalendarServiceMailboxes",
        "assignment": "CalendarServiceImpersonation",
        "mailboxes": list(targets),
    }


def reaching_assignments(
    account: AccountInfo, assignments: Sequence[RoleAssignmentInfo]
) -> list[RoleAssignmentInfo]:
    """The enabled, regular (not merely delegating) assignments that reach the account,
    directly or through a group (Exchange resolves groups with -GetEffectiveUsers)."""
    names = {n.casefold() for n in account.names}
    return [
        a
        for a in assignments
        if a.enabled
        and (a.delegation or "Regular") == "Regular"
        and ({(a.effective_user or "").casefold(), (a.user or "").casefold()} & names)
    ]


def impersonation_covers(
    reaching: Sequence[RoleAssignmentInfo], scopes: Sequence[ScopeMembers]
) -> set[str] | None:
    """The case-folded primary addresses the reaching assignments may impersonate, or
    None when one of them covers the whole organisation."""
    if any((a.write_scope or "Organization") == "Organization" for a in reaching):
        return None
    used = {a.custom_scope for a in reaching if a.custom_scope}
    covered: set[str] = set()
    for scope in scopes:
        if scope.scope in used:
            covered |= scope.members
    return covered


def impersonation_reaches_every_mailbox(
    access: str,
    upn: str,
    account: AccountInfo | None | Unavailable,
    assignments: Sequence[RoleAssignmentInfo] | Unavailable | Blocked,
    scopes: Sequence[ScopeMembers] | Unavailable,
    targets: Sequence[str],
) -> Result:
    """An enabled ApplicationImpersonation assignment reaches the service account, and
    its scope (Organization, or custom scopes Exchange itself resolves) covers every
    target mailbox."""
    if access != "impersonation":
        return [
            Finding(
                Severity.INFO, f"Not needed: the calendar service uses {access} access."
            )
        ]
    for facts, what in (
        (assignments, "ApplicationImpersonation assignments"),
        (account, f"the service account {upn}"),
        (scopes, "management scopes"),
    ):
        if isinstance(facts, Unavailable | Blocked):
            return _unavailable(facts, what) or []
    if account is None:
        return [
            Finding(Severity.UNKNOWN, f"No recipient {upn} was found by the shell.")
        ]
    names = {n.casefold() for n in account.names}
    reaching = reaching_assignments(account, assignments)
    targets_folded = {t.casefold(): t for t in targets}
    if not reaching:
        delegating = [
            a
            for a in assignments
            if (a.delegation or "Regular") != "Regular"
            and (
                {(a.effective_user or "").casefold(), (a.user or "").casefold()} & names
            )
        ]
        # An admin often assumes the role group's delegating assignment is enough.
        why = (
            " What it gets through "
            f"{listing(sorted({a.assignee or a.name for a in delegating}))} is a "
            "delegating assignment: it may give the role to others, not use it."
            if delegating
            else ""
        )
        return [
            Finding(
                Severity.FAIL,
                f"No enabled ApplicationImpersonation assignment reaches {upn}, directly "
                f"or through a group.{why}",
                evidence=tuple(
                    f"{a.name}: {a.effective_user or a.assignee} "
                    f"({a.delegation or 'Regular'}, {'enabled' if a.enabled else 'disabled'})"
                    for a in assignments
                )
                or (
                    "Get-ManagementRoleAssignment -Role ApplicationImpersonation: none",
                ),
                fix="impersonation_missing",
                values=_new_assignment(upn, targets),
                subjects=(upn,),
            )
        ]
    if not targets:
        return _no_targets("the impersonation scope")
    if any((a.write_scope or "Organization") == "Organization" for a in reaching):
        whole = [
            a.name
            for a in reaching
            if (a.write_scope or "Organization") == "Organization"
        ]
        return [
            Finding(
                Severity.WARN,
                f"{upn} may impersonate every mailbox in the organisation "
                f"({listing(whole)}); a scope over the invited mailboxes is enough.",
                evidence=tuple(
                    f"{a.name}: RecipientWriteScope {a.write_scope}" for a in reaching
                ),
                fix="impersonation_missing",
                values=_new_assignment(upn, targets),
                subjects=(upn,),
            )
        ]
    used = {a.custom_scope for a in reaching if a.custom_scope}
    covered = impersonation_covers(reaching, scopes) or set()
    outside = [
        original for folded, original in targets_folded.items() if folded not in covered
    ]
    if not outside:
        return []
    filters = [f"{s.scope}: {s.filter}" for s in scopes if s.scope in used]
    return [
        Finding(
            Severity.FAIL,
            f"{len(outside)} of {len(targets)} target mailboxes are outside the "
            f"impersonation scope of {upn}: {listing(outside)}.",
            evidence=(*filters, *(f"outside the scope: {t}" for t in outside[:200])),
            fix="impersonation_scope_gap",
            values={"upn": upn, "mailboxes": outside},
            subjects=tuple(outside),
        )
    ]


# --- Send As ------------------------------------------------------------------------


def send_as_on_every_mailbox(
    access: str,
    upn: str,
    mailboxes: dict[str, str] | Unavailable,
    entries: Sequence[SendAsEntry] | Unavailable,
    targets: Sequence[str],
    errors: ReadErrors | None = None,
) -> Result:
    """Without impersonation the calendar service sends invitations as each user: the
    Send As right for the service account on every target mailbox; a Deny wins. A
    mailbox Get-ADPermission failed on could not be evaluated, and says why."""
    if access != "delegate":
        return [
            Finding(
                Severity.INFO, f"Not needed: the calendar service uses {access} access."
            )
        ]
    for facts, what in (
        (mailboxes, "mailboxes (Get-Mailbox)"),
        (entries, "Send As permissions (Get-ADPermission)"),
    ):
        if isinstance(facts, Unavailable):
            return _unavailable(facts, what) or []
    if not targets:
        return _no_targets("Send As")
    allowed: set[str] = set()
    denied: set[str] = set()
    for entry in entries:
        address = mailboxes.get(entry.mailbox, entry.mailbox.casefold())
        (denied if entry.deny else allowed).add(address)
    unread, findings = _unread_mailboxes("Send As permissions", targets, errors)
    missing, refused = [], []
    for target in targets:
        folded = target.casefold()
        if folded in unread:
            continue
        if folded in denied:
            refused.append(target)
        elif folded not in allowed:
            missing.append(target)
    findings += _unattributed("Send As permissions", errors, missing)
    if missing or refused:
        described = [f"{t}: no Send As" for t in missing] + [
            f"{t}: Send As denied" for t in refused
        ]
        findings.append(
            Finding(
                Severity.FAIL,
                f"{upn} may not send as {len(missing) + len(refused)} of {len(targets)} "
                f"target mailboxes: {listing(missing + refused)}.",
                evidence=tuple(described[:200]),
                fix="send_as_missing",
                values={"upn": upn, "mailboxes": missing + refused},
                subjects=tuple(missing + refused),
            )
        )
    return findings


# --- calendar folder permissions ------------------------------------------------------


def calendar_editor_on_every_mailbox(
    access: str,
    upn: str,
    calendars: dict[str, str] | Unavailable,
    rights: dict[tuple[str, str], tuple[str, ...]] | Unavailable,
    targets: Sequence[str],
    errors: ReadErrors | None = None,
) -> Result:
    """Without impersonation: Editor (or more) for the service account on each target
    mailbox's calendar, the folder found by type whatever its name. A mailbox whose
    folders or permissions could not be read could not be evaluated, and says why."""
    if access != "delegate":
        return [
            Finding(
                Severity.INFO, f"Not needed: the calendar service uses {access} access."
            )
        ]
    for facts, what in (
        (calendars, "calendar folders (Get-MailboxFolderStatistics)"),
        (rights, "calendar permissions (Get-MailboxFolderPermission)"),
    ):
        if isinstance(facts, Unavailable):
            return _unavailable(facts, what) or []
    if not targets:
        return _no_targets("calendar permissions")
    unread, findings = _unread_mailboxes("calendar permissions", targets, errors)
    short, no_calendar = [], []
    for target in targets:
        if target.casefold() in unread:
            continue
        name = calendars.get(target.casefold())
        if name is None:
            no_calendar.append(target)
            continue
        granted = rights.get((target.casefold(), name), ())
        if not {r.casefold() for r in granted} & EDITOR_OR_MORE:
            short.append((target, name, ", ".join(granted) or "none"))
    findings += _unattributed(
        "calendar permissions", errors, [t for t, _, _ in short] + no_calendar
    )
    if short:
        findings.append(
            Finding(
                Severity.FAIL,
                f"{upn} lacks Editor on {len(short)} of {len(targets)} calendars: "
                f"{listing(f'{t} ({level})' for t, _, level in short)}.",
                evidence=tuple(
                    f"{t}:\\{name}: {level}" for t, name, level in short[:200]
                ),
                fix="delegate_access_missing",
                values={"upn": upn, "mailboxes": [t for t, _, _ in short]},
                subjects=tuple(t for t, _, _ in short),
            )
        )
    if no_calendar:
        findings.append(
            Finding(
                Severity.UNKNOWN,
                f"No calendar folder was found for {listing(no_calendar)}.",
            )
        )
    return findings
