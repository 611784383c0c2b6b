"""A folder of Export-Clixml files as a shell source, for `pytest --from-export DIR`.

ExportFolder answers the pipelines the audit runs from the files that the shipped
collector (ewsready/data/collect.ps1) writes: one file per query, named after the
cmdlet without its hyphen, plus manifest.json saying how each query went. Pipelines
map to files through FILES; parameters the audit passes are applied to the loaded
objects (_PARAMETERS and _IGNORED say which cmdlet accepts which).

Whatever the export cannot answer raises ShellError with error_id NOT_IN_EXPORT and a
message starting "not in the export:", so a check reports that it could not evaluate
instead of passing on an empty list: a missing file, a query the collector recorded as
failed or skipped, a mailbox it could not read, a parameter value it did not collect
(another -Role, another -FolderScope), or a parameter offline filtering cannot apply.
An -Identity that names nothing raises ShellError with Exchange's own error id,
ManagementObjectNotFoundException, as the live cmdlet would.

Exports not made by collect.ps1 (Export-Clixml run by hand, HealthChecker's data) are
read too, without a manifest; the per-mailbox files then lack the EwsreadyMailbox note
property, and rows are matched to mailboxes by their AD identity instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ewsready import clixml, shellfacts
from ewsready.psobjects import (
    Cmdlet,
    ErrorRecord,
    Pipeline,
    PSObject,
    ShellError,
    ShellOutput,
)

log = logging.getLogger(__name__)

NOT_IN_EXPORT = "NotInExport"
NOT_FOUND = "ManagementObjectNotFoundException"
MANIFEST = "manifest.json"

# Note properties collect.ps1 adds so that rows can be told apart offline.
MAILBOX_TAG = shellfacts.COLLECTOR_MAILBOX_TAG
SERVER_TAG = "EwsreadyServer"
FILTER_TAG = "EwsreadyRecipientFilter"

# Pipelines (cmdlet names, case-insensitive) and the file that answers each.
FILES: dict[tuple[str, ...], str] = {
    ("Get-ExchangeServer",): "GetExchangeServer.xml",
    ("Get-WebServicesVirtualDirectory",): "GetWebServicesVirtualDirectory.xml",
    ("Get-ExchangeCertificate",): "GetExchangeCertificate.xml",
    ("Get-AcceptedDomain",): "GetAcceptedDomain.xml",
    ("Get-ManagementRoleAssignment",): "GetManagementRoleAssignment.xml",
    ("Get-ManagementScope",): "GetManagementScope.xml",
    ("Get-Recipient",): "GetRecipient.xml",
    ("Get-User",): "GetUser.xml",
    ("Get-ADUser",): "GetADUser.xml",
    ("Get-Mailbox",): "GetMailbox.xml",
    ("Get-MailboxFolderStatistics",): "GetMailboxFolderStatistics.xml",
    ("Get-Mailbox", "Get-MailboxFolderStatistics"): "GetMailboxFolderStatistics.xml",
    ("Get-MailboxFolderPermission",): "GetMailboxFolderPermission.xml",
    # The collector's calendar-rights pipeline: collect.ps1 wrote its rows already.
    (
        "Get-Mailbox",
        "Get-MailboxFolderStatistics",
        "Get-MailboxFolderPermission",
    ): "GetMailboxFolderPermission.xml",
    ("Get-ADPermission",): "GetADPermission.xml",
    ("Get-Mailbox", "Get-ADPermission"): "GetADPermission.xml",
}
KNOWN_FILES = frozenset(FILES.values())

# Files whose rows belong to one mailbox each (tagged EwsreadyMailbox by collect.ps1).
PER_MAILBOX = frozenset(
    {
        "GetMailboxFolderStatistics.xml",
        "GetMailboxFolderPermission.xml",
        "GetADPermission.xml",
    }
)

# Files larger than this are read again for each query instead of kept in memory.
CACHE_LIMIT = 64 * 1024 * 1024

_IDENTITY_PROPERTIES = (
    "Identity",
    "Name",
    "DistinguishedName",
    "Guid",
    "ExchangeGuid",
    "Alias",
    "PrimarySmtpAddress",
    "UserPrincipalName",
    "SamAccountName",
    "LegacyExchangeDN",
    "Fqdn",
    "DomainName",
    "Thumbprint",
    "ObjectGUID",
    "SID",
    "WindowsEmailAddress",
)
_PRINCIPAL_PROPERTIES = (*_IDENTITY_PROPERTIES, "DisplayName")


# collect.ps1 writes a few kilobytes; a mailbox list may add a few megabytes.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class ExportFolderError(ValueError):
    """The folder given to --from-export is missing or holds no known export file."""


def _not_in_export(message: str) -> ShellError:
    return ShellError(f"not in the export: {message}", error_id=NOT_IN_EXPORT)


def _texts(value: Any) -> list[str]:
    """The texts a value can be matched by: strings, objects' ToString, list items."""
    if value is None:
        return []
    if isinstance(value, tuple | list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, PSObject):
        return [value.text] if value.text is not None else []
    return [str(value)]


def _folded(values: Iterable[Any]) -> set[str]:
    return {text.casefold() for value in values for text in _texts(value) if text}


def _proxy_addresses(row: PSObject) -> set[str]:
    """SMTP addresses among EmailAddresses ("SMTP:a@b", "smtp:c@d"), folded."""
    found = set()
    for text in _texts(row.get("EmailAddresses")):
        kind, _, address = text.partition(":")
        if kind.casefold() == "smtp" and address:
            found.add(address.casefold())
    return found


def identity_forms(
    row: PSObject, names: Iterable[str] = _IDENTITY_PROPERTIES
) -> set[str]:
    """Every folded text by which -Identity could name this object."""
    forms = _folded(row.get(name) for name in names)
    identity = row.get("Identity")
    if isinstance(identity, PSObject):
        # An ADObjectId's text can be a canonical path; its Name and DN name it too.
        forms |= _folded([identity.get("Name"), identity.get("DistinguishedName")])
    return forms | _proxy_addresses(row)


def _matches(value: Any, forms: set[str]) -> bool:
    """Whether a parameter value names an object with these identity forms; DOMAIN\\
    user is also matched by the user part against SamAccountName and the like."""
    for text in _texts(value):
        wanted = text.casefold()
        if wanted in forms:
            return True
        if "\\" in wanted and wanted.rpartition("\\")[2] in forms:
            return True
    return False


def _first_label(text: str) -> str:
    return text.casefold().split(".", 1)[0]


def _same_server(value: Any, names: Iterable[str]) -> bool:
    """Server names compared as Exchange does: NetBIOS name or FQDN."""
    wanted = {_first_label(t) for t in _texts(value)}
    return any(_first_label(name) in wanted for name in names if name)


def _thumbprint(row: PSObject) -> str | None:
    printed = row.get("Thumbprint")
    if printed:
        return str(printed).upper()
    raw = row.get("RawData")
    if isinstance(raw, bytes) and raw:
        # Windows' thumbprint is the SHA-1 of the DER, which raw exports still hold.
        return hashlib.sha1(raw, usedforsecurity=False).hexdigest().upper()
    return None


Keep = Callable[[PSObject], bool]
Filter = Callable[["ExportFolder", str, Any], Keep]


@dataclass(frozen=True)
class _Query:
    """A pipeline resolved to a file, with the row filter its parameters make."""

    file: str
    keep: Keep
    unique_by: str | None = None  # drop later rows with the same text of this
    identity: str | None = None  # an -Identity that must name something
    missing: tuple[str, ...] = ()  # mailboxes in scope that the collector missed


class ExportFolder:
    """A ShellSource over a folder laid out by collect.ps1."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ExportFolderError(
                f"{self.path} is not a folder; name the folder collect.ps1 wrote"
            )
        present = {p.name for p in self.path.iterdir() if p.is_file()}
        self.files = frozenset(present & KNOWN_FILES)
        if not self.files:
            raise ExportFolderError(
                f"{self.path} holds none of the files collect.ps1 writes "
                f"({', '.join(sorted(KNOWN_FILES))}); run collect.ps1 in the Exchange "
                "Management Shell and name its output folder"
            )
        ignored = sorted(present - KNOWN_FILES - {MANIFEST})
        if ignored:
            log.debug("%s: not read: %s", self.path, ", ".join(ignored))
        self.manifest = self._read_manifest()
        self.description = self._describe()
        self._cache: dict[str, list[PSObject]] = {}
        self._mailbox_index: dict[str, set[str]] | None = None
        self._warned_large: set[str] = set()

    # --- the folder ---------------------------------------------------------------

    def _read_manifest(self) -> Mapping[str, Any]:
        path = self.path / MANIFEST
        if not path.is_file():
            log.info("%s has no %s; reading the files as they are", self.path, MANIFEST)
            return {}
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ExportFolderError(
                f"{path} is larger than collect.ps1's manifest can be "
                f"({MAX_MANIFEST_BYTES:,} bytes)"
            )
        try:
            # PowerShell 5.1's Out-File -Encoding UTF8 writes a byte order mark.
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportFolderError(f"{path} is unreadable: {exc}") from None
        except RecursionError:
            raise ExportFolderError(
                f"{path} is nested too deeply to be a manifest"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
            raise ExportFolderError(f"{path} is not collect.ps1's manifest")
        return data

    def _describe(self) -> str:
        text = f"Export-Clixml folder {self.path}"
        version = self.manifest.get("script_version")
        started = self.manifest.get("started_utc")
        if version or started:
            text += f" (collect.ps1 {version or '?'}, started {started or '?'} UTC)"
        return text

    def _entry(self, file: str) -> Mapping[str, Any]:
        entry = self.manifest.get("files", {}).get(file)
        return entry if isinstance(entry, dict) else {}

    def _usable(self, file: str) -> bool:
        """Whether a file may be read for lookups (present and not recorded as failed);
        the query that names the file itself goes through _check_available."""
        status = self._entry(file).get("status")
        return file in self.files and status not in ("failed", "skipped")

    def _failure(self, file: str, primary: str) -> tuple[str, str | None] | None:
        """What the collector recorded for a mailbox it could not read for a file:
        the error text and the exception's type name."""
        for address, recorded in (self._entry(file).get("failures") or {}).items():
            if str(address).casefold() != primary:
                continue
            if isinstance(recorded, dict):
                return str(recorded.get("error")), recorded.get("reason")
            return str(recorded), None
        return None

    def _check_available(self, file: str) -> None:
        entry = self._entry(file)
        status = entry.get("status")
        if status in ("failed", "skipped"):
            errors = entry.get("errors") or ["no reason recorded"]
            raise _not_in_export(
                f"{file}: the collector recorded the query as {status}: {errors[0]}"
            )
        if file not in self.files:
            raise _not_in_export(
                f"{file} is missing from {self.path}; collect.ps1 writes it"
            )
        if status == "partial":
            log.debug("%s: collected in part: %s", file, entry.get("errors"))

    def _rows(self, file: str) -> Iterator[PSObject]:
        if file in self._cache:
            yield from self._cache[file]
            return
        path = self.path / file
        size = path.stat().st_size
        keep = size <= CACHE_LIMIT
        if not keep and file not in self._warned_large:
            # TODO: large per-mailbox files are read again for every mailbox queried;
            # an index by mailbox would make a 50,000-mailbox export quick to audit.
            log.info("%s is %d MB; it is read again for each query", file, size >> 20)
            self._warned_large.add(file)
        loaded: list[PSObject] = []
        try:
            for value in clixml.iter_file(path):
                row = value if isinstance(value, PSObject) else _wrap(value)
                if keep:
                    loaded.append(row)
                yield row
        except clixml.ClixmlError as exc:
            raise ShellError(
                f"could not read the export: {exc}", "UnreadableExport"
            ) from exc
        if keep:
            self._cache[file] = loaded

    # --- mailboxes ----------------------------------------------------------------

    def _mailboxes(self) -> dict[str, set[str]]:
        """Each mailbox in GetMailbox.xml: primary address -> its identity forms."""
        if self._mailbox_index is None:
            index: dict[str, set[str]] = {}
            if self._usable("GetMailbox.xml"):
                for row in self._rows("GetMailbox.xml"):
                    primary = str(row.get("PrimarySmtpAddress") or "").casefold()
                    if primary:
                        index[primary] = identity_forms(row)
            self._mailbox_index = index
        return self._mailbox_index

    def resolve_mailbox(self, value: Any) -> str:
        """The primary SMTP address (folded) of the mailbox an identity names."""
        index = self._mailboxes()
        found = [primary for primary, forms in index.items() if _matches(value, forms)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ShellError(
                f"{value!r} names {len(found)} mailboxes in the export",
                "AmbiguousIdentity",
            )
        failure = self._failure("GetMailbox.xml", str(value).casefold())
        if failure is not None:
            text, reason = failure
            if reason == NOT_FOUND:
                raise ShellError(text, NOT_FOUND)
            raise _not_in_export(f"the collector could not read {value!r}: {text}")
        limited = self.manifest.get("mailbox_filter")
        if limited:
            raise _not_in_export(
                f"GetMailbox.xml was collected for {len(limited)} listed mailbox(es) "
                f"only, and {value!r} is not among them"
            )
        if not self._usable("GetMailbox.xml"):
            if "@" in str(value):
                # Without GetMailbox.xml an address can only be taken as given.
                return str(value).casefold()
            raise _not_in_export(
                f"GetMailbox.xml is missing or was not collected, so {value!r} cannot "
                "be matched to a mailbox"
            )
        raise ShellError(
            f"The operation couldn't be performed because object {value!r} couldn't be "
            "found in the export (GetMailbox.xml).",
            NOT_FOUND,
        )

    def _mailbox_keep(self, file: str, value: Any) -> Keep:
        primary = self.resolve_mailbox(value)
        failure = self._failure(file, primary)
        if failure is not None:
            raise _not_in_export(
                f"{file} has no rows for {primary}; the collector recorded: {failure[0]}"
            )
        forms = self._mailboxes().get(primary, {primary})

        def keep(row: PSObject) -> bool:
            tag = row.get(MAILBOX_TAG)
            if tag is not None:
                return str(tag).casefold() == primary
            return _owned_by(row, forms)

        return keep

    def only_server(self) -> list[str]:
        """The names of the organisation's one Exchange server, when it has one: an
        export of Get-ExchangeCertificate made there can only hold its certificates."""
        if not self._usable("GetExchangeServer.xml"):
            return []
        servers = [
            row
            for row in self._rows("GetExchangeServer.xml")
            if not row.get("IsEdgeServer")
        ]
        if len(servers) != 1:
            return []
        return _texts(servers[0].get("Name")) + _texts(servers[0].get("Fqdn"))

    # --- principals (the service account) ----------------------------------------

    def principal_forms(self, value: Any) -> set[str]:
        """Every folded text that names the user a -User or -RoleAssignee value names:
        the value itself plus, when GetUser.xml or GetADUser.xml holds that user, its
        names, DN, SID, display name and so on."""
        forms = _folded([value])
        for file in ("GetUser.xml", "GetADUser.xml"):
            if not self._usable(file):
                continue
            for row in self._rows(file):
                row_forms = identity_forms(row, _PRINCIPAL_PROPERTIES)
                if _matches(value, row_forms - _folded([row.get("DisplayName")])):
                    forms |= row_forms
        return forms

    # --- answering pipelines ------------------------------------------------------

    def _query(self, pipeline: Pipeline) -> _Query:
        if not pipeline:
            raise ValueError("an empty pipeline")
        names = tuple(c.name.casefold() for c in pipeline)
        file = _FILES_FOLDED.get(names)
        if file is None:
            shown = " | ".join(c.name for c in pipeline)
            raise _not_in_export(
                f"collect.ps1 writes no file that answers {shown}; it collects: "
                + "; ".join(" | ".join(k) for k in FILES)
            )
        self._check_available(file)

        filters: list[Keep] = []
        unique_by: str | None = None
        identity: str | None = None
        chosen: set[str] | None = None  # mailboxes chosen by a leading Get-Mailbox
        named = False  # a per-mailbox query naming its mailbox
        *leading, last = pipeline
        if leading:
            # Get-Mailbox ahead of a per-mailbox cmdlet chooses mailboxes, not rows.
            keep_mailboxes, chosen = self._chosen(file, leading[0])
            named = any(p.casefold() == "identity" for p in leading[0].parameters)
            if keep_mailboxes is not None:
                filters.append(keep_mailboxes)

        name = last.name.casefold()
        for parameter, value in last.parameters.items():
            key = (name, parameter.casefold())
            if key in _IGNORED or parameter.casefold() in _COMMON:
                _IGNORED.get(key, _accept_any)(file, last, parameter, value)
                continue
            make = _PARAMETERS.get(key)
            if make is None:
                raise _not_in_export(
                    f"{last.name} -{parameter} cannot be applied to {file} offline"
                )
            if parameter.casefold() == "identity":
                named = True
                if file in _MUST_FIND:
                    identity = str(value)
            filters.append(make(self, file, value))
        if name == "get-managementroleassignment" and not any(
            p.casefold() == "geteffectiveusers" for p in last.parameters
        ):
            # The export lists one row per effective user; without the switch
            # Exchange lists each assignment once.
            unique_by = "Identity"

        missing: tuple[str, ...] = ()
        if file in PER_MAILBOX and not named:
            failures = self._entry(file).get("failures") or {}
            missing = tuple(
                sorted(a for a in failures if chosen is None or a.casefold() in chosen)
            )

        def keep(row: PSObject) -> bool:
            return all(f(row) for f in filters)

        return _Query(file, keep, unique_by, identity, missing)

    def _chosen(self, file: str, cmdlet: Cmdlet) -> tuple[Keep | None, set[str] | None]:
        """The row filter a leading Get-Mailbox makes, and the mailboxes it chose
        (None: all of them)."""
        given = {p.casefold() for p in cmdlet.parameters} - _COMMON - {"resultsize"}
        if not given:
            return None, None
        if given == {"identity"}:
            value = next(
                v for p, v in cmdlet.parameters.items() if p.casefold() == "identity"
            )
            keep = self._mailbox_keep(file, value)
            return keep, {self.resolve_mailbox(value)}
        mailboxes = self._query((cmdlet,))
        chosen = {
            str(row.get("PrimarySmtpAddress") or "").casefold()
            for row in self._rows("GetMailbox.xml")
            if mailboxes.keep(row)
        }
        forms = {a: self._mailboxes().get(a, {a}) for a in chosen}

        def keep(row: PSObject) -> bool:
            tag = row.get(MAILBOX_TAG)
            if tag is not None:
                return str(tag).casefold() in chosen
            return any(_owned_by(row, f) for f in forms.values())

        return keep, chosen

    def stream(self, pipeline: Pipeline) -> Iterator[PSObject]:
        """The objects the pipeline outputs, read from the file one at a time.

        A query the export cannot answer fails here, before the first object. A
        query over many mailboxes yields what the export holds and then raises
        ShellError naming the mailboxes the collector could not read."""
        query = self._query(pipeline)
        log.debug("%s: %s", self.path, query.file)
        return self._answer(query)

    def read(self, pipeline: Pipeline) -> ShellOutput:
        """The objects the pipeline outputs and, for a query over many mailboxes, one
        error record per mailbox the collector could not read (the mailbox's address
        as its target), as a live session reports a mailbox a cmdlet failed on."""
        query = self._query(pipeline)
        log.debug("%s: %s", self.path, query.file)
        objects = tuple(self._answer(replace(query, missing=())))
        errors = []
        for address in query.missing:
            text, reason = self._failure(query.file, address.casefold()) or (
                "the collector could not read it",
                None,
            )
            errors.append(
                ErrorRecord(
                    message=text,
                    target=address,
                    reason=reason,
                    activity=pipeline[-1].name,
                    error_id=NOT_IN_EXPORT,
                )
            )
        return ShellOutput(objects, tuple(errors))

    def _answer(self, query: _Query) -> Iterator[PSObject]:
        seen: set[str] = set()
        found = 0
        for row in self._rows(query.file):
            if not query.keep(row):
                continue
            if query.unique_by is not None:
                key = "\n".join(_texts(row.get(query.unique_by))) or repr(row)
                if key in seen:
                    continue
                seen.add(key)
            found += 1
            yield row
        if found == 0 and query.identity is not None:
            raise ShellError(
                f"The operation couldn't be performed because object "
                f"{query.identity!r} couldn't be found in the export ({query.file}).",
                NOT_FOUND,
            )
        if query.missing:
            raise _not_in_export(
                f"{query.file} lacks {len(query.missing)} mailbox(es) the collector "
                f"could not read: {', '.join(query.missing)}"
            )

    def run(self, pipeline: Pipeline) -> list[PSObject]:
        """Every object the pipeline outputs."""
        return list(self.stream(pipeline))


def _owned_by(row: PSObject, forms: set[str]) -> bool:
    """Whether an untagged per-mailbox row belongs to the mailbox with these forms.
    Such rows name their mailbox by its AD identity, followed by a folder for folder
    statistics ("contoso.local/Users/Ann\\Calendar") and permissions ("Ann:\\Calendar").
    """
    for text in _texts(row.get("Identity")):
        folded = text.casefold()
        owner = folded.partition(":\\")[0].partition("\\")[0]
        if folded in forms or owner in forms:
            return True
    return False


def _wrap(value: Any) -> PSObject:
    """A top-level primitive (rare in Exchange output) as an object with its text."""
    return PSObject(text=None if value is None else str(value))


# --- parameters -------------------------------------------------------------------


def _accept_any(file: str, cmdlet: Cmdlet, parameter: str, value: Any) -> None:
    return None


def _only(expected: str) -> Callable[[str, Cmdlet, str, Any], None]:
    """A parameter the export was collected with; any other value is not in it."""

    def check(file: str, cmdlet: Cmdlet, parameter: str, value: Any) -> None:
        if str(value).casefold() != expected.casefold():
            raise _not_in_export(
                f"{file} was collected with -{parameter} {expected}, not {value!r}"
            )

    return check


def _by_identity(folder: ExportFolder, file: str, value: Any) -> Keep:
    return lambda row: _matches(value, identity_forms(row))


def _by_mailbox(folder: ExportFolder, file: str, value: Any) -> Keep:
    return folder._mailbox_keep(file, value)


def _by_mailbox_identity(folder: ExportFolder, file: str, value: Any) -> Keep:
    """Get-Mailbox -Identity: resolved like every per-mailbox query, so that a mailbox
    the collector could not read or was not asked for is reported as such."""
    primary = folder.resolve_mailbox(value)
    return lambda row: str(row.get("PrimarySmtpAddress") or "").casefold() == primary


def _by_folder(folder: ExportFolder, file: str, value: Any) -> Keep:
    """-Identity mailbox:\\folder of Get-MailboxFolderPermission."""
    text = str(value)
    mailbox, separator, path = text.partition(":\\")
    if not separator:
        mailbox, path = text, ""
    in_mailbox = folder._mailbox_keep(file, mailbox)
    wanted = path.strip("\\").rpartition("\\")[2].casefold()

    def keep(row: PSObject) -> bool:
        if not in_mailbox(row):
            return False
        if not wanted:
            return True
        return any(t.casefold() == wanted for t in _texts(row.get("FolderName")))

    return keep


def _by_server(folder: ExportFolder, file: str, value: Any) -> Keep:
    def keep(row: PSObject) -> bool:
        names = _texts(row.get(SERVER_TAG)) or _texts(row.get("Server"))
        if not names:
            identity = _texts(row.get("Identity"))
            names = [t.partition("\\")[0] for t in identity if "\\" in t]
        if not names:
            names = folder.only_server()
        if not names:
            raise _not_in_export(
                f"{file} does not say which server each object is on, so -Server "
                "cannot be applied"
            )
        return _same_server(value, names)

    return keep


def _by_thumbprint(folder: ExportFolder, file: str, value: Any) -> Keep:
    wanted = str(value).upper()
    return lambda row: _thumbprint(row) == wanted


def _by_principal(*names: str) -> Filter:
    def make(folder: ExportFolder, file: str, value: Any) -> Keep:
        forms = folder.principal_forms(value)

        def keep(row: PSObject) -> bool:
            for name in names:
                field = row.get(name)
                texts = _texts(field)
                if isinstance(field, PSObject):
                    # MailboxFolderPermission's User: its text is a display name; its
                    # properties may name the recipient behind it.
                    texts += _texts(field.get("ADRecipient"))
                    texts += _texts(field.get("RecipientPrincipal"))
                if _matches(texts, forms):
                    return True
            return False

        return keep

    return make


def _by_filter(folder: ExportFolder, file: str, value: Any) -> Keep:
    collected = folder._entry(file).get("filters")
    if collected is not None and str(value) not in collected:
        raise _not_in_export(
            f"{file} holds the recipients of the impersonation scopes' filters only, "
            f"not of {value!r}"
        )
    return lambda row: str(row.get(FILTER_TAG)) == str(value)


_UPN_FILTER = re.compile(
    r"^\s*UserPrincipalName\s+-eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE
)


def _by_upn_filter(folder: ExportFolder, file: str, value: Any) -> Keep:
    """Get-ADUser -Filter "UserPrincipalName -eq '...'", the form collect.ps1 uses."""
    match = _UPN_FILTER.match(str(value))
    if match is None:
        raise _not_in_export(
            f"{file} can answer -Filter \"UserPrincipalName -eq '...'\" only, not "
            f"{value!r}"
        )
    wanted = match.group(1).replace("''", "'").casefold()
    return lambda row: wanted in _folded(_texts(row.get("UserPrincipalName")))


def _by_types(folder: ExportFolder, file: str, value: Any) -> Keep:
    wanted = _folded(
        value if isinstance(value, tuple | list) else str(value).split(",")
    )
    wanted = {w.strip() for w in wanted}
    return lambda row: bool(_folded([row.get("RecipientTypeDetails")]) & wanted)


_PARAMETERS: dict[tuple[str, str], Filter] = {
    ("get-exchangeserver", "identity"): _by_identity,
    ("get-webservicesvirtualdirectory", "identity"): _by_identity,
    ("get-webservicesvirtualdirectory", "server"): _by_server,
    ("get-exchangecertificate", "identity"): _by_identity,
    ("get-exchangecertificate", "server"): _by_server,
    ("get-exchangecertificate", "thumbprint"): _by_thumbprint,
    ("get-accepteddomain", "identity"): _by_identity,
    ("get-managementroleassignment", "identity"): _by_identity,
    ("get-managementroleassignment", "roleassignee"): _by_principal(
        "RoleAssignee", "RoleAssigneeName", "EffectiveUserName", "User"
    ),
    ("get-managementscope", "identity"): _by_identity,
    ("get-recipient", "recipientpreviewfilter"): _by_filter,
    ("get-recipient", "recipienttypedetails"): _by_types,
    ("get-user", "identity"): _by_identity,
    ("get-aduser", "identity"): _by_identity,
    ("get-aduser", "filter"): _by_upn_filter,
    ("get-mailbox", "identity"): _by_mailbox_identity,
    ("get-mailbox", "recipienttypedetails"): _by_types,
    ("get-mailboxfolderstatistics", "identity"): _by_mailbox,
    ("get-mailboxfolderpermission", "identity"): _by_folder,
    ("get-mailboxfolderpermission", "user"): _by_principal("User"),
    ("get-adpermission", "identity"): _by_mailbox,
    ("get-adpermission", "user"): _by_principal("User"),
}

# Parameters the export was collected with (or that do not change the answer).
_IGNORED: dict[tuple[str, str], Callable[[str, Cmdlet, str, Any], None]] = {
    ("get-mailbox", "resultsize"): _accept_any,
    ("get-recipient", "resultsize"): _accept_any,
    ("get-webservicesvirtualdirectory", "adpropertiesonly"): _accept_any,
    ("get-managementroleassignment", "geteffectiveusers"): _accept_any,
    ("get-managementroleassignment", "role"): _only("ApplicationImpersonation"),
    ("get-mailboxfolderstatistics", "folderscope"): _only("Calendar"),
    ("get-aduser", "properties"): _accept_any,
}
# Where an -Identity that matches no row is an error, as it is live. A mailbox without
# Send-As rows is an answer; a calendar folder always has Default and Anonymous rows.
_MUST_FIND = KNOWN_FILES - {"GetMailboxFolderStatistics.xml", "GetADPermission.xml"}
_COMMON = frozenset({"erroraction", "warningaction", "domaincontroller"})

_FILES_FOLDED = {tuple(n.casefold() for n in k): v for k, v in FILES.items()}
