"""Configured vs effective: what Exchange's configuration grants, per mailbox, against
what EWS actually allowed the service account to do.

Each side is checked on its own elsewhere (impersonation, calendar_permission;
mailbox_access). Where they disagree for a mailbox, one of the two views is misleading
the admin: a grant that EWS does not honour yet, or access that comes from somewhere the
configuration read does not show. This rule names those mailboxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ewsready.facts import Blocked, MailboxAccessFacts, MailboxRead, Unavailable
from ewsready.rules import Finding, Result, Severity, from_blocked, listing, plural
from ewsready.rules.configuration import (
    EDITOR_OR_MORE,
    impersonation_covers,
    reaching_assignments,
)
from ewsready.shellfacts import (
    AccountInfo,
    ReadErrors,
    RoleAssignmentInfo,
    ScopeMembers,
)

# EWS answers that say "not allowed"; anything else (a missing mailbox, a busy or
# failing server) says nothing about permissions and is left to mailbox_access.
_REFUSALS = {
    "impersonation": {"ErrorImpersonateUserDenied"},
    "delegate": {"ErrorAccessDenied", "ErrorFolderNotFound", "NoReadRight"},
}


@dataclass(frozen=True)
class Configured:
    """What the configuration says for one mailbox."""

    allowed: bool
    detail: str  # "in scope CalendarServiceMailboxes", "Reviewer on \\Kalender"


Impersonation = tuple[
    AccountInfo | None | Unavailable,
    Sequence[RoleAssignmentInfo] | Unavailable | Blocked,
    Sequence[ScopeMembers] | Unavailable,
]
Delegation = tuple[
    Mapping[str, str] | Unavailable,
    Mapping[tuple[str, str], tuple[str, ...]] | Unavailable,
    ReadErrors,
]


def impersonation_configured(
    facts: Impersonation, targets: Sequence[str]
) -> dict[str, Configured] | str:
    """Per target (case-folded primary address): may the account impersonate it? A
    string says why the configuration could not be read."""
    account, assignments, scopes = facts
    for part in (account, assignments, scopes):
        if isinstance(part, Unavailable):
            return part.reason
        if isinstance(part, Blocked):
            return part.cause
    if account is None:
        return "the shell did not find the service account"
    reaching = reaching_assignments(account, assignments)
    if not reaching:
        return {
            t.casefold(): Configured(False, "no ApplicationImpersonation assignment")
            for t in targets
        }
    covered = impersonation_covers(reaching, scopes)
    used = listing(sorted({a.custom_scope or "Organization" for a in reaching}))
    result = {}
    for target in targets:
        folded = target.casefold()
        if covered is None or folded in covered:
            result[folded] = Configured(True, f"in the impersonation scope ({used})")
        else:
            result[folded] = Configured(False, f"outside the scope ({used})")
    return result


def delegation_configured(
    facts: Delegation, targets: Sequence[str]
) -> dict[str, Configured] | str:
    """Per target: has the account Editor (or more) on the calendar? A mailbox the
    shell could not read is left out: there is nothing to compare."""
    calendars, rights, unread = facts
    for part in (calendars, rights):
        if isinstance(part, Unavailable):
            return part.reason
    result = {}
    for target in targets:
        folded = target.casefold()
        name = calendars.get(folded)
        if name is None or folded in unread.mailboxes:
            continue  # calendar_permission reports these
        granted = rights.get((folded, name), ())
        level = ", ".join(granted) or "none"
        allowed = bool({r.casefold() for r in granted} & EDITOR_OR_MORE)
        result[folded] = Configured(allowed, f"{level} on \\{name}")
    return result


def _effective(read: MailboxRead, access: str) -> tuple[bool, str] | None:
    """(allowed, what EWS said), or None when the answer says nothing about rights."""
    if read.ok:
        if access == "delegate" and read.can_write is False:
            return False, "read only (no right to add items)"
        if access == "delegate" and read.can_write is None:
            return None
        return True, "allowed"
    if read.code in _REFUSALS[access]:
        return False, read.code
    return None


def granted_but_refused(
    access: MailboxAccessFacts, configured: Mapping[str, Configured] | str | None
) -> set[str]:
    """The case-folded addresses EWS refused although the configuration grants them:
    for these another grant changes nothing; EWS has to apply the one there is."""
    if not isinstance(configured, Mapping):
        return set()
    refused = set()
    for read in access.reads:
        address = (read.read_as or read.address).casefold()
        setting = configured.get(address)
        outcome = _effective(read, access.access)
        if setting is not None and setting.allowed and outcome and not outcome[0]:
            refused.add(address)
    return refused


def configuration_matches_ews(
    upn: str,
    access: MailboxAccessFacts | Blocked,
    configured: dict[str, Configured] | str,
) -> Result:
    """A warning per direction naming each mailbox where the two views disagree."""
    if isinstance(access, Blocked):
        return from_blocked(access)
    if isinstance(configured, str):
        return [
            Finding(
                Severity.UNKNOWN,
                "Exchange's configuration could not be compared with what EWS "
                f"allowed: {configured}.",
            )
        ]
    if access.error:
        return [
            Finding(
                Severity.UNKNOWN,
                "Exchange's configuration could not be compared with what EWS "
                f"allowed: {access.error}.",
            )
        ]

    refused: list[str] = []  # configured, but EWS said no
    beyond: list[str] = []  # not configured, but EWS said yes
    evidence: dict[str, str] = {}
    compared = 0
    for read in access.reads:
        address = read.read_as or read.address
        setting = configured.get(address.casefold())
        outcome = _effective(read, access.access)
        if setting is None or outcome is None:
            continue
        compared += 1
        allowed, said = outcome
        if setting.allowed == allowed:
            continue
        (refused if setting.allowed else beyond).append(address)
        evidence[address] = f"{address}: configured: {setting.detail}; EWS: {said}"

    findings = []
    if refused:
        findings.append(
            Finding(
                Severity.WARN,
                f"EWS refused {upn} on {plural(len(refused), 'mailbox', 'mailboxes')} "
                f"that Exchange's configuration grants: {listing(refused)}. A recent "
                "change may not have reached EWS yet, or something the configuration "
                "read does not show (a Deny, another server's copy) overrides it.",
                evidence=tuple(evidence[a] for a in refused[:200]),
                fix="configuration_not_effective",
                values={"upn": upn, "mailboxes": refused},
                subjects=tuple(refused),
            )
        )
    if beyond:
        findings.append(
            Finding(
                Severity.WARN,
                f"EWS allowed {upn} on {plural(len(beyond), 'mailbox', 'mailboxes')} "
                f"where Exchange's configuration shows no grant: {listing(beyond)}. "
                "Another grant reaches the account (a group, FullAccess, or an "
                "assignment the shell account cannot see), so it has more access than "
                "the configuration shows.",
                evidence=tuple(evidence[a] for a in beyond[:200]),
                fix="access_beyond_configuration",
                values={"upn": upn, "mailboxes": beyond},
                subjects=tuple(beyond),
            )
        )
    if not compared:
        return [
            Finding(
                Severity.UNKNOWN,
                "No mailbox could be compared: EWS gave no answer about permissions "
                "for any target mailbox that the configuration covers.",
            )
        ]
    return findings
