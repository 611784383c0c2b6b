"""Exchange's own configuration as facts, built from shell objects of any source.

The same builders read live pypsrp output and offline Export-Clixml objects, so a
property may arrive as a nested object (Identity with its ToString), a plain string, or
Nil. Each builder takes what it needs and says what it could not read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ewsready.builds import BuildError, parse_build
from ewsready.clixml import parse_datetime
from ewsready.facts import CertificateInfo, Unavailable
from ewsready.psobjects import ErrorRecord, PSObject


def text_of(value: object) -> str | None:
    """A property as text: a nested object's ToString, a plain value's str, or None."""
    if value is None:
        return None
    if isinstance(value, PSObject):
        return value.text
    return str(value)


def flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.casefold() in ("true", "false"):
        return value.casefold() == "true"
    return None


def listed(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(t for t in (text_of(v) for v in value) if t)
    text = text_of(value)
    return tuple(part.strip() for part in text.split(",")) if text else ()


# --- servers ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeServerInfo:
    name: str
    fqdn: str | None
    build: str | None  # "15.1.2507.39"
    version_text: str | None  # AdminDisplayVersion as Exchange shows it
    roles: str | None
    edition: str | None


def exchange_servers(objects: Iterable[PSObject]) -> tuple[ExchangeServerInfo, ...]:
    servers = []
    for obj in objects:
        version = obj.get("AdminDisplayVersion")
        build = None
        if isinstance(version, PSObject) and version.get("Major") is not None:
            parts = [version.get(n) for n in ("Major", "Minor", "Build", "Revision")]
            if all(isinstance(p, int) for p in parts):
                build = ".".join(str(p) for p in parts)
        if build is None and text_of(version):
            try:
                build = ".".join(str(n) for n in parse_build(text_of(version) or ""))
            except BuildError:
                build = None
        servers.append(
            ExchangeServerInfo(
                name=text_of(obj.get("Name")) or text_of(obj.get("Identity")) or "?",
                fqdn=text_of(obj.get("Fqdn")),
                build=build,
                version_text=text_of(version),
                roles=text_of(obj.get("ServerRole")),
                edition=text_of(obj.get("Edition")),
            )
        )
    return tuple(servers)


# --- EWS virtual directories ----------------------------------------------------------


@dataclass(frozen=True)
class VirtualDirectoryInfo:
    identity: str  # "EX01\EWS (Default Web Site)"
    server: str | None
    basic: bool | None
    windows: bool | None
    internal_url: str | None
    external_url: str | None


def virtual_directories(
    objects: Iterable[PSObject],
) -> tuple[VirtualDirectoryInfo, ...]:
    return tuple(
        VirtualDirectoryInfo(
            identity=text_of(obj.get("Identity")) or text_of(obj.get("Name")) or "?",
            server=text_of(obj.get("Server")),
            basic=flag(obj.get("BasicAuthentication")),
            windows=flag(obj.get("WindowsAuthentication")),
            internal_url=text_of(obj.get("InternalUrl")),
            external_url=text_of(obj.get("ExternalUrl")),
        )
        for obj in objects
    )


# --- certificates -------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeCertificateInfo:
    server: str | None
    thumbprint: str
    services: tuple[str, ...] | None  # None: the source did not say (e.g. a raw export)
    root_ca_type: str | None
    certificate: CertificateInfo | None  # parsed from RawData
    raw: bytes | None

    @property
    def bound_to_iis(self) -> bool | None:
        if self.services is None:
            return None
        return any(s.casefold() == "iis" for s in self.services)


def exchange_certificates(
    objects: Iterable[PSObject], server: str | None = None
) -> tuple[ExchangeCertificateInfo, ...]:
    from ewsready.probes.network import describe

    certificates = []
    for obj in objects:
        raw = obj.get("RawData")
        info = None
        if isinstance(raw, bytes | bytearray):
            try:
                info = describe(bytes(raw))
            except ValueError:
                info = None
        thumbprint = text_of(obj.get("Thumbprint")) or (
            info.thumbprint if info else "?"
        )
        services = obj.get("Services")
        certificates.append(
            ExchangeCertificateInfo(
                # The collector tags each certificate with its server; a raw export
                # only knows the server the session ran on.
                server=server
                or text_of(obj.get("EwsreadyServer"))
                or text_of(obj.get("Server"))
                or text_of(obj.get("PSComputerName")),
                thumbprint=thumbprint.upper(),
                services=listed(services) if services is not None else None,
                root_ca_type=text_of(obj.get("RootCAType")),
                certificate=info,
                raw=bytes(raw) if isinstance(raw, bytes | bytearray) else None,
            )
        )
    return tuple(certificates)


# --- impersonation ------------------------------------------------------------------


@dataclass(frozen=True)
class RoleAssignmentInfo:
    name: str
    effective_user: (
        str | None
    )  # EffectiveUserName (display name) with -GetEffectiveUsers
    user: str | None  # the effective user's identity text
    assignee: str | None  # RoleAssigneeName: the user or group the role was given to
    assignee_type: str | None
    write_scope: str | None  # Organization, CustomRecipientScope, ...
    custom_scope: str | None
    enabled: bool
    delegation: str | None  # Regular grants the role; Delegating only lets it be given


def role_assignments(objects: Iterable[PSObject]) -> tuple[RoleAssignmentInfo, ...]:
    return tuple(
        RoleAssignmentInfo(
            name=text_of(obj.get("Name")) or "?",
            effective_user=text_of(obj.get("EffectiveUserName")),
            user=text_of(obj.get("User")),
            assignee=text_of(obj.get("RoleAssigneeName")),
            assignee_type=text_of(obj.get("RoleAssigneeType")),
            write_scope=text_of(obj.get("RecipientWriteScope")),
            custom_scope=text_of(obj.get("CustomRecipientWriteScope")),
            enabled=flag(obj.get("Enabled")) is not False,
            delegation=text_of(obj.get("RoleAssignmentDelegationType")),
        )
        for obj in objects
    )


@dataclass(frozen=True)
class AccountInfo:
    identity: str | None
    names: tuple[str, ...]  # every name an assignment row may use for the account


def account(objects: Iterable[PSObject]) -> AccountInfo | None:
    for obj in objects:
        names = tuple(
            dict.fromkeys(
                t
                for t in (
                    text_of(obj.get(k))
                    for k in (
                        "Identity",
                        "Name",
                        "DisplayName",
                        "Alias",
                        "UserPrincipalName",
                    )
                )
                if t
            )
        )
        return AccountInfo(text_of(obj.get("Identity")), names)
    return None


@dataclass(frozen=True)
class ScopeMembers:
    scope: str
    filter: str | None
    members: frozenset[str]  # primary SMTP addresses, case-folded


def primary_addresses(objects: Iterable[PSObject]) -> frozenset[str]:
    return frozenset(
        (text_of(obj.get("PrimarySmtpAddress")) or "").casefold() for obj in objects
    ) - {""}


# --- Send As ------------------------------------------------------------------------


@dataclass(frozen=True)
class SendAsEntry:
    mailbox: str  # the mailbox's identity text, as Get-ADPermission names it
    user: str | None
    deny: bool
    inherited: bool


def send_as_entries(objects: Iterable[PSObject]) -> tuple[SendAsEntry, ...]:
    """The Get-ADPermission rows that grant or deny the Send-As extended right."""
    entries = []
    for obj in objects:
        rights = {r.casefold() for r in listed(obj.get("ExtendedRights"))}
        if "send-as" not in rights:
            continue
        entries.append(
            SendAsEntry(
                mailbox=text_of(obj.get("Identity")) or "?",
                user=text_of(obj.get("User")),
                deny=flag(obj.get("Deny")) is True,
                inherited=flag(obj.get("IsInherited")) is True,
            )
        )
    return tuple(entries)


def mailbox_addresses(objects: Iterable[PSObject]) -> dict[str, str]:
    """Mailbox identity text -> primary SMTP address (case-folded)."""
    return {
        text_of(obj.get("Identity"))
        or "": (text_of(obj.get("PrimarySmtpAddress")) or "").casefold()
        for obj in objects
    }


# --- calendar folder permissions ------------------------------------------------------


# The property collect.ps1 adds to each per-mailbox row: the mailbox's primary address.
COLLECTOR_MAILBOX_TAG = "EwsreadyMailbox"


def calendar_folders(objects: Iterable[PSObject]) -> dict[str, str]:
    """Mailbox address (case-folded) -> its calendar's name, found by FolderType (the
    name is localized: Calendar, Kalender, Calendrier...)."""
    found = {}
    for obj in objects:
        if (text_of(obj.get("FolderType")) or "").casefold() != "calendar":
            continue
        identity = text_of(obj.get("Identity")) or ""
        mailbox = identity.partition("\\")[0].casefold()
        # collect.ps1 tags each row with its mailbox's primary address.
        mailbox = (text_of(obj.get(COLLECTOR_MAILBOX_TAG)) or mailbox).casefold()
        if mailbox:
            found.setdefault(
                mailbox, text_of(obj.get("Name")) or identity.partition("\\")[2]
            )
    return found


def folder_rights(
    objects: Iterable[PSObject],
) -> dict[tuple[str, str], tuple[str, ...]]:
    """(mailbox address, folder name) -> AccessRights, from rows named 'addr:\\Folder'."""
    rights = {}
    for obj in objects:
        identity = text_of(obj.get("Identity")) or ""
        mailbox, _, folder = identity.partition(":\\")
        tagged = text_of(obj.get(COLLECTOR_MAILBOX_TAG))
        if tagged and text_of(obj.get("FolderName")):
            mailbox, folder = tagged, text_of(obj.get("FolderName")) or ""
        rights[(mailbox.casefold(), folder)] = listed(obj.get("AccessRights"))
    return rights


# --- mailboxes a per-mailbox read could not read -------------------------------------

# Properties of a Get-Mailbox row that an error record may name the mailbox by.
_MAILBOX_NAMES = (
    "Identity",
    "Id",
    "Name",
    "Alias",
    "DisplayName",
    "DistinguishedName",
    "PrimarySmtpAddress",
    "UserPrincipalName",
    "SamAccountName",
    "Guid",
    "ExchangeGuid",
    "LegacyExchangeDN",
)


def mailbox_names(objects: Iterable[PSObject]) -> dict[str, str]:
    """Every name a Get-Mailbox row goes by (case-folded) -> its primary address
    (case-folded). A name two mailboxes share (a display name, say) is left out, so an
    error is never pinned on the wrong mailbox."""
    names: dict[str, str | None] = {}
    for obj in objects:
        primary = (text_of(obj.get("PrimarySmtpAddress")) or "").casefold()
        if not primary:
            continue
        forms = [text_of(obj.get(name)) for name in _MAILBOX_NAMES]
        forms += [a.partition(":")[2] for a in listed(obj.get("EmailAddresses"))]
        for form in forms:
            key = (form or "").strip().casefold()
            if key:
                names[key] = primary if names.get(key, primary) == primary else None
    return {key: primary for key, primary in names.items() if primary}


@dataclass(frozen=True)
class ReadErrors:
    """What a read over many mailboxes could not read: the mailboxes its error records
    name (primary address, case-folded -> why), and the errors that name none."""

    mailboxes: Mapping[str, Unavailable] = field(default_factory=dict)
    unattributed: tuple[ErrorRecord, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.mailboxes or self.unattributed)

    def merged(self, other: ReadErrors) -> ReadErrors:
        """Both reads' errors; a mailbox keeps the first reason given for it."""
        return ReadErrors(
            {**other.mailboxes, **self.mailboxes},
            self.unattributed + other.unattributed,
        )


def _mailbox_named(target: str, names: Mapping[str, str]) -> str | None:
    """The mailbox an error's target names: a mailbox's own name, or a folder of it
    ("ana@contoso.example:\\Calendar", "contoso.local/Users/Ana\\Calendar")."""
    folded = target.strip().casefold()
    candidates = [folded]
    if ":\\" in folded:
        candidates.append(folded.partition(":\\")[0])
    if "\\" in folded:
        candidates.append(folded.partition("\\")[0])
    for candidate in candidates:
        if candidate in names:
            return names[candidate]
    # Without a Get-Mailbox row to go by, an address is taken as it is.
    return next((c for c in candidates if "@" in c and " " not in c), None)


def errors_by_mailbox(
    errors: Iterable[ErrorRecord],
    names: Mapping[str, str],
    answers: frozenset[str] = frozenset(),
) -> ReadErrors:
    """Tie each error record to the mailbox it names. Records whose reason is in
    `answers` are the cmdlet's way of answering ("no permission entry for that
    user"), not a failure to read, and are left out."""
    mailboxes: dict[str, Unavailable] = {}
    unattributed = []
    for error in errors:
        if error.reason in answers:
            continue
        mailbox = _mailbox_named(error.target, names) if error.target else None
        if mailbox is None:
            unattributed.append(error)
            continue
        cmdlet = f"{error.activity} failed: " if error.activity else ""
        mailboxes.setdefault(mailbox, Unavailable(cmdlet + error.message))
    return ReadErrors(mailboxes, tuple(unattributed))


# --- the service account in Active Directory ---------------------------------------

# msDS-UserPasswordExpiryTimeComputed holds a FILETIME; these two mean "never".
_NEVER = (0, 0x7FFFFFFFFFFFFFFF)
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)


# What Get-ADUser must be asked for besides its default properties.
DIRECTORY_PROPERTIES = (
    "Enabled",
    "LockedOut",
    "PasswordNeverExpires",
    "PasswordExpired",
    "PasswordLastSet",
    "msDS-UserPasswordExpiryTimeComputed",
    "AccountExpirationDate",
)


@dataclass(frozen=True)
class DirectoryAccount:
    """The service account as Get-ADUser shows it; None where a property was absent."""

    name: str
    enabled: bool | None
    locked: bool | None
    password_never_expires: bool | None
    password_expired: bool | None
    password_last_set: dt.datetime | None
    password_expires: dt.datetime | None  # None: never, or not readable
    account_expires: dt.datetime | None


def from_filetime(value: object) -> dt.datetime | None:
    """A FILETIME (100 ns ticks since 1601, UTC) as a datetime; None for "never"."""
    if isinstance(value, bool) or not isinstance(value, int) or value in _NEVER:
        return None
    if value < 0:
        return None
    try:
        return _FILETIME_EPOCH + dt.timedelta(microseconds=value // 10)
    except OverflowError:
        return None


def _moment(value: object) -> dt.datetime | None:
    """A date and time as an aware datetime; pypsrp hands <DT> values over as their
    ISO text, exports as datetimes. None when absent or out of Python's range."""
    if isinstance(value, str):
        try:
            value = parse_datetime(value)
        except (ValueError, OverflowError):
            return None
    if not isinstance(value, dt.datetime):
        return None
    # Exchange and AD send local or unspecified kinds; treat a naive time as UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01 with a positive offset, and the like
        return None


def directory_accounts(objects: Iterable[PSObject]) -> tuple[DirectoryAccount, ...]:
    accounts = []
    for obj in objects:
        accounts.append(
            DirectoryAccount(
                name=text_of(obj.get("UserPrincipalName"))
                or text_of(obj.get("SamAccountName"))
                or text_of(obj.get("DistinguishedName"))
                or "?",
                enabled=flag(obj.get("Enabled")),
                locked=flag(obj.get("LockedOut")),
                password_never_expires=flag(obj.get("PasswordNeverExpires")),
                password_expired=flag(obj.get("PasswordExpired")),
                password_last_set=_moment(obj.get("PasswordLastSet")),
                password_expires=from_filetime(
                    obj.get("msDS-UserPasswordExpiryTimeComputed")
                ),
                account_expires=_moment(obj.get("AccountExpirationDate")),
            )
        )
    return tuple(accounts)
