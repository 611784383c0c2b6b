"""Mailbox access and invited addresses, judged per mailbox."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from urllib.parse import urlsplit

from ewsready.facts import AddressFacts, Blocked, MailboxAccessFacts, MailboxRead
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked, listing, plural
from ewsready.rules.agreement import Configured, granted_but_refused
from ewsready.rules.logon import fix_for_server_fault

DETAILED_LIMIT = 25
IMPERSONATION_SCOPE = "CalendarServiceMailboxes"
IMPERSONATION_ASSIGNMENT = "CalendarServiceImpersonation"
DELEGATE_CODES = {
    "ErrorAccessDenied",
    "NoReadRight",
    "NoWriteRight",
    "ErrorFolderNotFound",
}


def _describe(read: MailboxRead) -> str:
    who = read.address + (f" (read as {read.read_as})" if read.read_as else "")
    detail = f": {read.message}" if read.message else ""
    return f"{who}: {read.code}{detail}"


def _fix_for(code: str, access: str, count_all: bool) -> str:
    if code == "ErrorImpersonateUserDenied":
        return "impersonation_missing" if count_all else "impersonation_scope_gap"
    if code in DELEGATE_CODES:
        return "delegate_access_missing"
    if code == "ErrorNonExistentMailbox":
        return "mailbox_not_found"
    return fix_for_server_fault(code) or "mailbox_read_failed"


def every_calendar_readable(
    facts: MailboxAccessFacts | Blocked,
    upn: str,
    configured: Mapping[str, Configured] | str | None = None,
) -> Result:
    """Each invited calendar read as the calendar service would. `configured` is what
    Exchange's configuration grants per mailbox (agreement.impersonation_configured or
    delegation_configured; a string when it could not be read): a mailbox it already
    grants is not given a fix that grants it again."""
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if facts.error:
        return [
            Finding(
                Severity.UNKNOWN,
                f"Calendar access could not be checked: {facts.error}.",
            )
        ]
    if not facts.reads:
        return [
            Finding(
                Severity.UNKNOWN,
                "No mailbox to check: the settings name no invited address.",
            )
        ]

    failing: list[MailboxRead] = []
    unknown_rights = [
        r
        for r in facts.reads
        if facts.access == "delegate" and r.ok and r.can_write is None
    ]
    for read in facts.reads:
        if not read.ok:
            failing.append(read)
        elif facts.access == "delegate" and read.can_write is False:
            failing.append(
                MailboxRead(
                    read.address,
                    False,
                    "NoWriteRight",
                    "the calendar can be read but no event can be added (Editor "
                    "needed)",
                    read.read_as,
                )
            )
    skipped = (
        [
            Finding(
                Severity.BLOCKED,
                f"Blocked by invited_address: {listing(facts.unresolved)} "
                f"{'was' if len(facts.unresolved) == 1 else 'were'} not read, as no mailbox "
                "has that address",
                blocked_by="invited_address",
                subjects=facts.unresolved,
            )
        ]
        if facts.unresolved
        else []
    )
    if not failing and unknown_rights:
        return [
            Finding(
                Severity.UNKNOWN,
                f"The server did not say what {upn} may do with "
                f"{plural(len(unknown_rights), 'calendar')} (no EffectiveRights), so "
                "Editor access could not be confirmed: "
                f"{listing(r.address for r in unknown_rights)}.",
            )
        ]
    if not failing:
        return skipped

    by_code: dict[str, list[MailboxRead]] = defaultdict(list)
    for read in failing:
        by_code[read.code].append(read)
    total = len(facts.reads)
    mode = "impersonating" if facts.access == "impersonation" else "as a delegate"
    findings = []
    fixes: dict[str, list[MailboxRead]] = defaultdict(list)
    granted = granted_but_refused(facts, configured)
    not_effective = []
    for code, reads in by_code.items():
        kept = [r for r in reads if (r.read_as or r.address).casefold() not in granted]
        not_effective += [r for r in reads if r not in kept]
        if kept:
            fixes[_fix_for(code, facts.access, len(kept) == total)].extend(kept)
    if not_effective:
        # In read order, as the configured-vs-effective finding lists them: one fix.
        position = {
            (r.read_as or r.address).casefold(): i for i, r in enumerate(facts.reads)
        }
        fixes["configuration_not_effective"] = sorted(
            not_effective, key=lambda r: position[(r.read_as or r.address).casefold()]
        )
    for fix, reads in fixes.items():
        codes = sorted({r.code for r in reads})
        addresses = [r.read_as or r.address for r in reads]
        if fix_for_server_fault(reads[0].code) and reads[0].message:
            # The server failed the requests; the account's rights are not in question.
            sentence = (
                f"{plural(len(reads), 'calendar')} of {total} could not be read "
                f"{mode} because {reads[0].message}: "
                f"{listing(r.address for r in reads)}."
            )
        else:
            already = (
                " Exchange's configuration already grants "
                f"{'it' if len(reads) == 1 else 'them'}; another grant would change "
                "nothing, so the fix is to find why EWS does not honour it."
                if fix == "configuration_not_effective"
                else ""
            )
            sentence = (
                f"The service account {upn} cannot use "
                f"{plural(len(reads), 'calendar')} of {total} {mode} "
                f"({', '.join(codes)}): {listing(r.address for r in reads)}.{already}"
            )
        findings.append(
            Finding(
                Severity.FAIL,
                sentence,
                evidence=tuple(_describe(r) for r in reads[:200])
                + ((f"... and {len(reads) - 200} more",) if len(reads) > 200 else ()),
                fix=fix,
                values={
                    "upn": upn,
                    "mailboxes": addresses,
                    "scope": IMPERSONATION_SCOPE,
                    "assignment": IMPERSONATION_ASSIGNMENT,
                    "url": facts.url,
                    "host": urlsplit(facts.url).hostname or "",
                },
                subjects=tuple(r.address for r in reads),
            )
        )
    return findings + skipped


def invited_addresses_are_primary(facts: AddressFacts | Blocked) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    if facts.error:
        return [
            Finding(
                Severity.UNKNOWN,
                f"Invited addresses could not be resolved: {facts.error}.",
            )
        ]
    if not facts.resolutions:
        return [
            Finding(
                Severity.UNKNOWN, "No invited address to check: the settings name none."
            )
        ]

    findings: list[Finding] = []
    missing = [
        r
        for r in facts.resolutions
        if not r.found and r.code == "ErrorNameResolutionNoResults"
    ]
    unresolved = [r for r in facts.resolutions if not r.found and r not in missing]
    if unresolved:
        first = unresolved[0]
        because = (
            f" because {first.message}"
            if fix_for_server_fault(first.code) and first.message
            else ""
        )
        findings.append(
            Finding(
                Severity.UNKNOWN,
                f"{plural(len(unresolved), 'invited address', 'invited addresses')} could "
                f"not be resolved{because}: {listing(r.invited for r in unresolved)}.",
                evidence=tuple(
                    f"ResolveNames smtp:{r.invited}: {r.code} {r.message}".strip()
                    for r in unresolved
                ),
            )
        )
    if missing:
        findings.append(
            Finding(
                Severity.FAIL,
                (
                    f"No mailbox has the invited address {missing[0].invited}."
                    if len(missing) == 1
                    else f"No mailbox has these {len(missing)} invited addresses: "
                    f"{listing(r.invited for r in missing)}."
                ),
                evidence=tuple(
                    f"ResolveNames smtp:{r.invited}: {r.code}" for r in missing
                ),
                fix="mailbox_not_found",
                values={"mailboxes": [r.invited for r in missing]},
                subjects=tuple(r.invited for r in missing),
            )
        )
    secondary = [
        r
        for r in facts.resolutions
        if r.found and r.primary and r.primary.casefold() != r.invited.casefold()
    ]
    for r in secondary[:DETAILED_LIMIT]:
        owner = f" of {r.display_name}" if r.display_name else ""
        findings.append(
            Finding(
                Severity.FAIL,
                f"{r.invited} is a secondary address{owner}; invite the user as the "
                f"primary SMTP address {r.primary}.",
                evidence=(
                    f"ResolveNames smtp:{r.invited} -> {r.display_name or '?'} "
                    f"<{r.primary}>",
                ),
                fix="address_not_primary",
                values={"invited": r.invited, "primary": r.primary},
                subjects=(r.invited,),
            )
        )
    if len(secondary) > DETAILED_LIMIT:
        rest = secondary[DETAILED_LIMIT:]
        findings.append(
            Finding(
                Severity.FAIL,
                f"{plural(len(rest), 'more invited address', 'more invited addresses')}"
                " are secondary addresses.",
                evidence=tuple(f"{r.invited} -> {r.primary}" for r in rest),
                fix="address_not_primary",
                values={"invited": rest[0].invited, "primary": rest[0].primary},
                subjects=tuple(r.invited for r in rest),
            )
        )
    return findings
