"""What the lab's Exchange answers to each EWS operation, and who may read what.

The lab is read-only and calendar-shaped: each mailbox has a root, a top of information
store and a calendar holding two meetings inside whatever window is asked for. Rights
follow the effective user, as in Exchange: with an ExchangeImpersonation header the
impersonated mailbox reads its own folders and nothing else; without one the service
account reads another mailbox's calendar only with Reviewer or a higher right on it,
and that mailbox's root only as Owner. Folder and item ids are opaque base64 strings
that carry the owner, so GetFolder, FindItem and GetItem need no server-side state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from lab.ews_soap import (
    Impersonation,
    SoapRequest,
    add,
    error_message,
    m,
    operation_response,
    response_code,
    success_message,
    t,
)
from lab.scenario import LabMailbox, Scenario

# Calendar rights that let the holder read items (Contributor may only create).
READ_RIGHTS = frozenset(
    {
        "Reviewer",
        "NonEditingAuthor",
        "Author",
        "PublishingAuthor",
        "Editor",
        "PublishingEditor",
        "Owner",
    }
)

# Get-MailboxFolderPermission names that EWS spells differently.
_EWS_PERMISSION_LEVELS = {
    "NonEditingAuthor": "NoneditingAuthor",
    "AvailabilityOnly": "FreeBusyTimeOnly",
    "LimitedDetails": "FreeBusyTimeAndSubjectAndLocation",
}

_ID_PREFIX = b"LAB1"
_SUBJECTS = ("Weekly planning", "Customer review")


class EwsFault(Exception):
    """Ends the whole request with an HTTP 500 SOAP fault, as Exchange does."""

    def __init__(self, code: str, message: str, values: dict[str, str] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.values = values or {}


class _MessageError(Exception):
    """Fails one response message of a batch; the others are still answered."""

    def __init__(self, code: str, text: str):
        super().__init__(code)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Caller:
    """The effective user of a request: the service account or the impersonated user."""

    mailbox: LabMailbox
    impersonating: bool


@dataclass(frozen=True)
class Outcome:
    content: etree._Element  # the m:<Operation>Response element
    response_code: str  # the first code that is not NoError, else NoError


@dataclass(frozen=True)
class _Folder:
    tag: str
    folder_class: str | None
    parent: str | None


_FOLDERS = {
    "root": _Folder("Folder", None, None),
    "msgfolderroot": _Folder("Folder", "IPF.Note", "root"),
    "calendar": _Folder("CalendarFolder", "IPF.Appointment", "msgfolderroot"),
}


@dataclass(frozen=True)
class _Target:
    mailbox: LabMailbox
    folder: str


@dataclass(frozen=True)
class _Item:
    owner: LabMailbox
    index: int
    start: datetime
    end: datetime


class Organisation:
    """The scenario's mailboxes as EWS sees them, answering one operation at a time."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._by_address: dict[str, LabMailbox] = {}
        for mailbox in scenario.mailboxes:
            for address in mailbox.addresses():
                self._by_address.setdefault(address.casefold(), mailbox)
        # The service account has a mailbox of its own even when the scenario lists
        # only the mailboxes under audit.
        self.service = self._by_address.get(scenario.service_upn.casefold())
        if self.service is None:
            self.service = LabMailbox(
                primary=scenario.service_upn, display_name="Calendar service account"
            )
            self._by_address[scenario.service_upn.casefold()] = self.service
        self._handlers: dict[str, Callable[[SoapRequest, Caller], Outcome]] = {
            "ConvertId": self._convert_id,
            "ResolveNames": self._resolve_names,
            "GetFolder": self._get_folder,
            "FindItem": self._find_item,
            "GetItem": self._get_item,
        }

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    def find(self, address: str) -> LabMailbox | None:
        return self._by_address.get(address.strip().casefold())

    def caller_for(self, impersonation: Impersonation | None) -> Caller:
        """The effective user, or an EwsFault when impersonation is refused."""
        if impersonation is None:
            return Caller(self.service, impersonating=False)
        if not self.scenario.impersonation_enabled:
            raise _impersonation_denied(impersonation.address)
        mailbox = self.find(impersonation.address)
        if mailbox is None:
            raise _no_such_mailbox(impersonation.address)
        is_primary = impersonation.address.casefold() == mailbox.primary.casefold()
        if impersonation.kind == "PrimarySmtpAddress" and not is_primary:
            raise EwsFault(
                "ErrorNonPrimarySmtpAddress",
                "The address given is not the mailbox's primary SMTP address.",
                {"Primary": mailbox.primary},
            )
        if not mailbox.in_impersonation_scope:
            raise _impersonation_denied(impersonation.address)
        return Caller(mailbox, impersonating=True)

    def answer(self, request: SoapRequest, caller: Caller) -> Outcome:
        handler = self._handlers.get(request.operation)
        if handler is None:
            message = error_message(
                request.operation,
                "ErrorInvalidOperation",
                "This simulated server does not implement the operation.",
            )
            return _outcome(request.operation, [message])
        return handler(request, caller)

    # Operations ---------------------------------------------------------------

    def _convert_id(self, request: SoapRequest, caller: Caller) -> Outcome:
        destination = request.payload.get("DestinationFormat", "EwsId")
        messages = []
        for source in _children(request.payload.find(m("SourceIds"))):
            if _decode_id(source.get("Id", "")) is None:
                messages.append(
                    error_message(
                        "ConvertId", "ErrorInvalidIdMalformed", "The id is malformed."
                    )
                )
                continue
            # The response element is in the messages namespace, unlike the request.
            message = success_message("ConvertId")
            add(
                message,
                m("AlternateId"),
                Format=destination,
                Id=source.get("Id", ""),
                Mailbox=source.get("Mailbox", ""),
            )
            messages.append(message)
        return _outcome("ConvertId", messages)

    def _resolve_names(self, request: SoapRequest, caller: Caller) -> Outcome:
        messages = []
        for entry in request.payload.findall(m("UnresolvedEntry")):
            text = (entry.text or "").strip()
            address = text[5:] if text.casefold().startswith("smtp:") else text
            mailbox = self.find(address)
            if mailbox is None:
                messages.append(
                    error_message(
                        "ResolveNames",
                        "ErrorNameResolutionNoResults",
                        "No mailbox matches the name.",
                    )
                )
                continue
            message = success_message("ResolveNames")
            resolution_set = add(
                message,
                m("ResolutionSet"),
                TotalItemsInView=1,
                IncludesLastItemInRange="true",
            )
            resolution = add(resolution_set, t("Resolution"))
            found = add(resolution, t("Mailbox"))
            add(found, t("Name"), mailbox.display_name or mailbox.primary)
            add(found, t("EmailAddress"), mailbox.primary)
            add(found, t("RoutingType"), "SMTP")
            add(found, t("MailboxType"), "Mailbox")
            messages.append(message)
        return _outcome("ResolveNames", messages)

    def _get_folder(self, request: SoapRequest, caller: Caller) -> Outcome:
        shape = request.payload.find(m("FolderShape"))
        asked = (
            {uri.get("FieldURI") for uri in shape.iter(t("FieldURI"))}
            if shape is not None
            else set()
        )
        wants_permissions = "folder:PermissionSet" in asked
        wants_rights = "folder:EffectiveRights" in asked
        messages = []
        for reference in _children(request.payload.find(m("FolderIds"))):
            try:
                target = self._target(reference, caller)
                right = self._right(caller, target)
                self._require_folder_access(target, right)
            except _MessageError as error:
                messages.append(error_message("GetFolder", error.code, error.text))
                continue
            message = success_message("GetFolder")
            folders = add(message, m("Folders"))
            folders.append(
                _folder_element(
                    target,
                    right=right,
                    permissions_of=self.service if wants_permissions else None,
                    with_rights=wants_rights,
                )
            )
            messages.append(message)
        return _outcome("GetFolder", messages)

    def _find_item(self, request: SoapRequest, caller: Caller) -> Outcome:
        id_only = _id_only(request.payload.find(m("ItemShape")))
        view = request.payload.find(m("CalendarView"))
        paging = request.payload.find(m("IndexedPageItemView"))
        if view is not None:
            start = _parse_time(view.get("StartDate"))
            end = _parse_time(view.get("EndDate"))
            limit = int(view.get("MaxEntriesReturned") or 0) or None
            offset = 0
        else:
            start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            end = start + timedelta(days=7)
            limit = None if paging is None else int(paging.get("MaxEntriesReturned", 0))
            offset = 0 if paging is None else int(paging.get("Offset", 0))

        messages = []
        for reference in _children(request.payload.find(m("ParentFolderIds"))):
            try:
                target = self._target(reference, caller)
                self._require_item_access(target, self._right(caller, target))
            except _MessageError as error:
                messages.append(error_message("FindItem", error.code, error.text))
                continue
            found = _calendar_items(target, start, end)
            page = found[offset : offset + limit if limit else None]
            is_last = offset + len(page) >= len(found)
            message = success_message("FindItem")
            root_folder = add(
                message,
                m("RootFolder"),
                TotalItemsInView=len(found),
                IncludesLastItemInRange="true" if is_last else "false",
            )
            if paging is not None and not is_last:
                root_folder.set("IndexedPagingOffset", str(offset + len(page)))
            items = add(root_folder, t("Items"))
            items.extend(_item_element(item, id_only=id_only) for item in page)
            messages.append(message)
        return _outcome("FindItem", messages)

    def _get_item(self, request: SoapRequest, caller: Caller) -> Outcome:
        messages = []
        for reference in _children(request.payload.find(m("ItemIds"))):
            try:
                item = self._item(reference)
                target = _Target(item.owner, "calendar")
                self._require_item_access(target, self._right(caller, target))
            except _MessageError as error:
                messages.append(error_message("GetItem", error.code, error.text))
                continue
            message = success_message("GetItem")
            add(message, m("Items")).append(_item_element(item, id_only=False))
            messages.append(message)
        return _outcome("GetItem", messages)

    # Targets and rights ------------------------------------------------------

    def _target(self, reference: etree._Element, caller: Caller) -> _Target:
        """The mailbox and folder a FolderId or DistinguishedFolderId points at.

        An unknown mailbox raises EwsFault, aborting the whole batch as Exchange does;
        a malformed or unknown folder fails only its own response message.
        """
        if reference.tag == t("DistinguishedFolderId"):
            address = reference.findtext(f"{t('Mailbox')}/{t('EmailAddress')}")
            if address is None:
                mailbox = caller.mailbox
            else:
                mailbox = self.find(address)
                if mailbox is None:
                    raise _no_such_mailbox(address.strip())
            folder = reference.get("Id", "")
        elif reference.tag == t("FolderId"):
            parts = _decode_id(reference.get("Id", ""))
            if not parts or parts[0] != "folder" or len(parts) != 3:
                raise _MessageError("ErrorInvalidIdMalformed", "The id is malformed.")
            mailbox = self.find(parts[1])
            if mailbox is None:
                raise _no_such_mailbox(parts[1])
            folder = parts[2]
        else:
            raise _MessageError("ErrorInvalidIdMalformed", "The id is malformed.")
        if folder not in _FOLDERS:
            raise _MessageError(
                "ErrorFolderNotFound", "The simulated mailbox has no such folder."
            )
        return _Target(mailbox, folder)

    def _item(self, reference: etree._Element) -> _Item:
        """The meeting an ItemId made by this lab points at."""
        parts = _decode_id(reference.get("Id", ""))
        if reference.tag != t("ItemId") or not parts or parts[0] != "item":
            raise _MessageError("ErrorInvalidIdMalformed", "The id is malformed.")
        try:
            _, address, index, start, end = parts
            index, start, end = int(index), int(start), int(end)
        except (TypeError, ValueError):
            raise _MessageError(
                "ErrorInvalidIdMalformed", "The id is malformed."
            ) from None
        owner = self.find(str(address))
        if owner is None:
            raise _no_such_mailbox(str(address))
        return _Item(
            owner,
            index,
            datetime.fromtimestamp(start, UTC),
            datetime.fromtimestamp(end, UTC),
        )

    def _right(self, caller: Caller, target: _Target) -> str:
        """The effective user's calendar-style right on the target folder."""
        if caller.mailbox.primary.casefold() == target.mailbox.primary.casefold():
            return "Owner"
        if caller.impersonating:
            # An impersonated user holds no rights in other mailboxes in this lab.
            return "None"
        if target.folder == "calendar":
            return target.mailbox.delegate_right
        return "Owner" if target.mailbox.delegate_right == "Owner" else "None"

    @staticmethod
    def _require_folder_access(target: _Target, right: str) -> None:
        allowed = (
            right in READ_RIGHTS if target.folder == "calendar" else right == "Owner"
        )
        if not allowed:
            raise _MessageError(
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            )

    @staticmethod
    def _require_item_access(target: _Target, right: str) -> None:
        if right not in READ_RIGHTS:
            raise _MessageError(
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            )


def _impersonation_denied(address: str) -> EwsFault:
    return EwsFault(
        "ErrorImpersonateUserDenied",
        f"The account may not impersonate {address}.",
    )


def _no_such_mailbox(address: str) -> EwsFault:
    return EwsFault(
        "ErrorNonExistentMailbox",
        "No mailbox has this SMTP address.",
        {"SmtpAddress": address},
    )


def named_mailboxes(payload: etree._Element) -> tuple[str, ...]:
    """Target addresses a request names, in order, each once.

    Mailbox/EmailAddress elements, ResolveNames entries and the owners of lab-made
    folder and item ids; the ExchangeImpersonation header is recorded separately.
    """
    named = []
    tags = (t("EmailAddress"), m("UnresolvedEntry"), t("FolderId"), t("ItemId"))
    for element in payload.iter(*tags):
        if element.tag in (t("FolderId"), t("ItemId")):
            parts = _decode_id(element.get("Id", ""))
            if parts and len(parts) > 1 and isinstance(parts[1], str):
                named.append(parts[1])
            continue
        is_target = element.tag == m("UnresolvedEntry") or (
            element.getparent().tag == t("Mailbox")
        )
        if is_target and element.text and element.text.strip():
            named.append(element.text.strip())
    return tuple(dict.fromkeys(named))


def _outcome(operation: str, messages: list[etree._Element]) -> Outcome:
    codes = [response_code(message) for message in messages]
    first_error = next((code for code in codes if code != "NoError"), "NoError")
    return Outcome(operation_response(operation, messages), first_error)


def _children(parent: etree._Element | None) -> Iterator[etree._Element]:
    if parent is None:
        return iter(())
    return (child for child in parent if isinstance(child.tag, str))


def _id_only(shape: etree._Element | None) -> bool:
    if shape is None:
        return True
    return (
        shape.findtext(t("BaseShape")) == "IdOnly"
        and shape.find(t("AdditionalProperties")) is None
    )


def _parse_time(value: str | None) -> datetime:
    if not value:
        raise EwsFault("ErrorSchemaValidation", "A date in the request is missing.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EwsFault(
            "ErrorSchemaValidation", "A date in the request is not valid."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _calendar_items(target: _Target, start: datetime, end: datetime) -> list[_Item]:
    """Two meetings spread inside the window; none outside the calendar folder."""
    span = end - start
    if target.folder != "calendar" or span <= timedelta(0):
        return []
    length = min(timedelta(minutes=30), span / 6)
    items = []
    for index in range(len(_SUBJECTS)):
        begins = (start + span * (index + 1) / 3).replace(microsecond=0)
        items.append(_Item(target.mailbox, index, begins, begins + length))
    return items


def _encode_id(*parts: str | int) -> str:
    return base64.b64encode(_ID_PREFIX + json.dumps(parts).encode()).decode("ascii")


def _decode_id(value: str) -> list | None:
    try:
        raw = base64.b64decode(value, validate=True)
        if not raw.startswith(_ID_PREFIX):
            return None
        parts = json.loads(raw[len(_ID_PREFIX) :])
    except (binascii.Error, ValueError):
        return None
    return parts if isinstance(parts, list) and parts else None


def _change_key(identifier: str) -> str:
    digest = hashlib.sha256(identifier.encode("ascii")).digest()[:12]
    return base64.b64encode(digest).decode("ascii")


def _id_element(parent: etree._Element, tag: str, identifier: str) -> None:
    add(parent, t(tag), Id=identifier, ChangeKey=_change_key(identifier))


def folder_id(mailbox: LabMailbox, folder: str) -> str:
    return _encode_id("folder", mailbox.primary, folder)


def _item_id(item: _Item) -> str:
    return _encode_id(
        "item",
        item.owner.primary,
        item.index,
        int(item.start.timestamp()),
        int(item.end.timestamp()),
    )


def _folder_element(
    target: _Target,
    right: str,
    permissions_of: LabMailbox | None,
    with_rights: bool = False,
) -> etree._Element:
    """The folder as GetFolder returns it; with the calendar's PermissionSet (naming
    `permissions_of` as the delegate) when asked for and readable."""
    spec = _FOLDERS[target.folder]
    names = {
        "root": "",
        "msgfolderroot": "Top of Information Store",
        "calendar": target.mailbox.calendar_name,
    }
    element = etree.Element(t(spec.tag))
    _id_element(element, "FolderId", folder_id(target.mailbox, target.folder))
    if spec.parent:
        _id_element(element, "ParentFolderId", folder_id(target.mailbox, spec.parent))
    if spec.folder_class:
        add(element, t("FolderClass"), spec.folder_class)
    add(element, t("DisplayName"), names[target.folder])
    add(element, t("TotalCount"), len(_SUBJECTS) if target.folder == "calendar" else 0)
    add(element, t("ChildFolderCount"), 0 if target.folder == "calendar" else 1)
    if with_rights:
        element.append(_effective_rights(right))
    # Only someone who owns the folder may read its permissions.
    if permissions_of and target.folder == "calendar" and right == "Owner":
        element.append(_calendar_permissions(target.mailbox, permissions_of))
    if spec.tag == "Folder":
        add(element, t("UnreadCount"), 0)
    return element


# What each folder role lets its holder do with the folder's items, as EffectiveRights.
_ROLE_RIGHTS = {
    "Owner": {
        "CreateAssociated",
        "CreateContents",
        "CreateHierarchy",
        "Delete",
        "Modify",
        "Read",
        "ViewPrivateItems",
    },
    "PublishingEditor": {
        "CreateContents",
        "CreateHierarchy",
        "Delete",
        "Modify",
        "Read",
    },
    "Editor": {"CreateContents", "Delete", "Modify", "Read"},
    "PublishingAuthor": {"CreateContents", "CreateHierarchy", "Read"},
    "Author": {"CreateContents", "Read"},
    "NonEditingAuthor": {"CreateContents", "Read"},
    "Reviewer": {"Read"},
    "Contributor": {"CreateContents"},
}
_RIGHT_NAMES = (
    "CreateAssociated",
    "CreateContents",
    "CreateHierarchy",
    "Delete",
    "Modify",
    "Read",
    "ViewPrivateItems",
)


def _effective_rights(right: str) -> etree._Element:
    granted = _ROLE_RIGHTS.get(right, set())
    rights = etree.Element(t("EffectiveRights"))
    for name in _RIGHT_NAMES:
        add(rights, t(name), "true" if name in granted else "false")
    return rights


def _calendar_permissions(mailbox: LabMailbox, delegate: LabMailbox) -> etree._Element:
    permission_set = etree.Element(t("PermissionSet"))
    entries = add(permission_set, t("CalendarPermissions"))
    _permission(entries, "AvailabilityOnly", user={"DistinguishedUser": "Default"})
    _permission(entries, "None", user={"DistinguishedUser": "Anonymous"})
    if mailbox.delegate_right != "None" and delegate.primary != mailbox.primary:
        user = {
            "PrimarySmtpAddress": delegate.primary,
            "DisplayName": delegate.display_name or delegate.primary,
        }
        _permission(entries, mailbox.delegate_right, user=user)
    return permission_set


def _permission(entries: etree._Element, right: str, user: dict[str, str]) -> None:
    entry = add(entries, t("CalendarPermission"))
    user_id = add(entry, t("UserId"))
    for name, value in user.items():
        add(user_id, t(name), value)
    can_read = right in READ_RIGHTS
    add(entry, t("IsFolderVisible"), "true" if can_read else "false")
    add(entry, t("ReadItems"), "FullDetails" if can_read else "None")
    add(
        entry,
        t("CalendarPermissionLevel"),
        _EWS_PERMISSION_LEVELS.get(right, right),
    )


def _item_element(item: _Item, id_only: bool) -> etree._Element:
    element = etree.Element(t("CalendarItem"))
    _id_element(element, "ItemId", _item_id(item))
    if id_only:
        return element
    _id_element(element, "ParentFolderId", folder_id(item.owner, "calendar"))
    add(element, t("ItemClass"), "IPM.Appointment")
    add(element, t("Subject"), _SUBJECTS[item.index % len(_SUBJECTS)])
    add(element, t("Start"), _format_time(item.start))
    add(element, t("End"), _format_time(item.end))
    add(element, t("IsAllDayEvent"), "false")
    add(element, t("LegacyFreeBusyStatus"), "Busy")
    organizer = add(add(element, t("Organizer")), t("Mailbox"))
    add(organizer, t("Name"), item.owner.display_name or item.owner.primary)
    add(organizer, t("EmailAddress"), item.owner.primary)
    add(organizer, t("RoutingType"), "SMTP")
    return element


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
