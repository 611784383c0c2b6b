"""Reachability: public DNS, global addresses, TCP and TLS from the internet."""

from __future__ import annotations

from ewsready.facts import Blocked, Reachability
from ewsready.findings import Finding, Severity
from ewsready.probes.network import address_kind
from ewsready.rules import Result, from_blocked, listing


def unresolved(reach: Reachability) -> Blocked:
    """The root cause that blocks everything behind a failed DNS answer."""
    if reach.dns.resolver_failed:
        return Blocked(
            f"public DNS could not be asked about {reach.host}", "reachability"
        )
    return Blocked(f"{reach.host} does not resolve in public DNS", "reachability")


def unreachable(reach: Reachability) -> Blocked | None:
    """The root cause when no address could carry a TLS connection, or None."""
    if reach.dns.error:
        return unresolved(reach)
    if not any(a.tcp_ok is not None for a in reach.attempts):
        return Blocked(
            f"{reach.host} has no address the internet can reach", "reachability"
        )
    if reach.reachable_address is None:
        return Blocked(
            f"{reach.host} port {reach.port} cannot be reached over TCP and TLS",
            "reachability",
        )
    return None


def _describe_kind(address: str, kind: str, lab: bool) -> str:
    if lab and kind == "global" and address_kind(address) == "loopback":
        return "loopback, standing in for a public address in the lab"
    return kind


def host_resolves(reach: Reachability) -> Result:
    if reach.dns.resolver_failed:
        return [
            Finding(
                Severity.UNKNOWN,
                f"Public DNS could not be asked about {reach.host}: {reach.dns.error}. "
                "Check network.resolvers and that this machine may query them.",
                evidence=(f"resolvers: {listing(reach.dns.resolvers)}",),
            )
        ]
    if reach.dns.error:
        return [
            Finding(
                Severity.FAIL,
                f"{reach.host} does not resolve in public DNS: {reach.dns.error}.",
                evidence=(
                    f"asked {listing(reach.dns.resolvers)} for A and AAAA records",
                ),
                fix="dns_unresolved",
                values={
                    "host": reach.host,
                    "resolvers": [r.rsplit(":", 1)[0] for r in reach.dns.resolvers],
                },
                subjects=(reach.host,),
            )
        ]
    return []


def addresses_are_global(reach: Reachability) -> Result:
    if reach.dns.error:
        return from_blocked(unresolved(reach))
    kinds = {a: address_kind(a, reach.loopback_is_public) for a in reach.dns.addresses}
    bad = {a: k for a, k in kinds.items() if k != "global"}
    if not bad:
        return []
    described = [f"{a} ({k})" for a, k in bad.items()]
    if reach.dns.literal:
        sentence = (
            f"The EWS URL names the address {listing(described)} instead of a host "
            "name, and the internet cannot reach it."
        )
    else:
        sentence = (
            f"{reach.host} resolves in public DNS to {listing(described)}, "
            "which the internet cannot reach."
        )
    return [
        Finding(
            Severity.FAIL,
            sentence,
            evidence=tuple(
                f"{a}: {_describe_kind(a, k, reach.loopback_is_public)}"
                for a, k in kinds.items()
            ),
            fix="dns_non_public_address",
            values={
                "host": reach.host,
                "addresses": list(bad),
                "resolvers": [r.rsplit(":", 1)[0] for r in reach.dns.resolvers],
            },
            subjects=tuple(bad),
        )
    ]


def endpoint_accepts_connections(reach: Reachability) -> Result:
    if reach.dns.error:
        return from_blocked(unresolved(reach))
    tried = [a for a in reach.attempts if a.tcp_ok is not None]
    if not tried:
        return from_blocked(
            Blocked(
                f"{reach.host} has no address the internet can reach", "reachability"
            )
        )
    evidence = tuple(
        f"{a.address} port {a.port}: "
        + (
            a.skipped
            or (
                "TCP and TLS ok" + (f" ({a.tls_version})" if a.tls_version else "")
                if a.tls_ok
                else a.error or "failed"
            )
        )
        for a in reach.attempts
    )
    failed = [a for a in tried if not (a.tcp_ok and a.tls_ok)]
    if not failed:
        return []
    what = "TLS handshakes" if all(a.tcp_ok for a in failed) else "TCP connections"
    return [
        Finding(
            Severity.FAIL,
            f"{reach.host} port {reach.port} does not accept {what} at "
            f"{listing([a.address for a in failed])}.",
            evidence=evidence,
            fix="tcp_unreachable",
            values={"host": reach.host, "port": reach.port},
            subjects=tuple(a.address for a in failed),
        )
    ]
