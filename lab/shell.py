"""The cmdlets behind the lab's PowerShell remoting endpoints.

Two endpoints share this module: Exchange's own (/PowerShell, configuration
"Microsoft.Exchange", no-language mode) and a domain controller's (/wsman, serving
Get-ADUser only). A pipeline arrives as psrpcore Command objects; `ShellOrganisation`
checks every command before anything runs, as PowerShell does, and then hands back a
lazy iterator of output objects, so a Get-Mailbox over thousands of mailboxes is built
one object at a time while the WSMan layer (lab/winrm.py) streams it out.

Objects are described with small value types (`LabObject`, `EnumValue`, `Multi`) and
turned into psrpcore objects only when written. They copy the shapes real Exchange
sends (see ../shared/real-world/exchange-clixml): type-name chains, enums as an Obj
with their ToString text and number, multi-valued properties as an Obj holding an LST,
ServerVersion as an object with Major/Minor/Build/Revision, AD object ids as objects
whose ToString is the identity, the remoting properties PSComputerName and RunspaceId.

Errors follow Exchange: "not found" and similar problems with one input object are
non-terminating (an error record, the pipeline still completes), while an unknown or
refused command, a script, a bad parameter or a filter the lab cannot evaluate ends
the pipeline Failed. `load_clixml` reads real Export-Clixml files so that a cmdlet can
answer with real objects instead of the scenario's (`Lab(..., shell_overrides=...)`).
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSEnumBase,
    PSInt,
    PSInt64,
    PSList,
    PSListBase,
    PSNoteProperty,
    PSObject,
    PSType,
    PSUri,
    deserialize_clixml,
)

from lab.pki import ServerCredentials
from lab.scenario import LabGroup, LabMailbox, LabRoleAssignment, LabServer, Scenario

logger = logging.getLogger(__name__)

EXCHANGE = "/PowerShell"
DOMAIN_CONTROLLER = "/wsman"

# How many objects Exchange returns when -ResultSize is not given.
DEFAULT_RESULT_SIZE = 1000
# msDS-UserPasswordExpiryTimeComputed when the password never expires.
NEVER_EXPIRES = 0x7FFFFFFFFFFFFFFF
_FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)

_ENUM_BASE = ("System.Enum", "System.ValueType", "System.Object")
_MULTI_BASE = ("Microsoft.Exchange.Data.MultiValuedPropertyBase", "System.Object")
_STRINGS = (
    "Microsoft.Exchange.Data.MultiValuedProperty`1[[System.String, mscorlib, "
    "Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]",
    *_MULTI_BASE,
)
_AD_OBJECT = (
    "Microsoft.Exchange.Data.Directory.ADObject",
    "Microsoft.Exchange.Data.Directory.ADRawEntry",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
)
_PRESENTATION = ("Microsoft.Exchange.Data.Directory.Management.ADPresentationObject",)
_AD_OBJECT_ID = (
    "Microsoft.Exchange.Data.Directory.ADObjectId",
    "Microsoft.Exchange.Data.ObjectId",
    "System.Object",
)


# Values ----------------------------------------------------------------------


@dataclass(frozen=True)
class EnumValue:
    """A .NET enum value: its type chain, its ToString text and its number."""

    type_names: tuple[str, ...]
    text: str
    number: int
    wide: bool = False  # an Int64 enum (RecipientTypeDetails)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Multi:
    """A multi-valued property: an Obj with its type chain around an LST."""

    type_names: tuple[str, ...]
    items: tuple[Any, ...] = ()


@dataclass(eq=False)
class LabObject:
    """An object as the shell outputs it: type chain, ToString, Props and MS."""

    type_names: tuple[str, ...]
    text: str | None = None
    props: dict[str, Any] = field(default_factory=dict)
    extended: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        """A property by name, case-insensitively, adapted before extended."""
        for bag in (self.props, self.extended):
            if name in bag:
                return bag[name]
        wanted = name.casefold()
        for bag in (self.props, self.extended):
            for key, value in bag.items():
                if key.casefold() == wanted:
                    return value
        return default

    def __str__(self) -> str:
        return self.text or ""


def text_of(value: Any) -> str:
    """The text PowerShell would show for a value."""
    if value is None:
        return ""
    if isinstance(value, Multi):
        return " ".join(text_of(v) for v in value.items)
    if isinstance(value, PSObject) and value.PSObject.to_string is not None:
        return value.PSObject.to_string
    return str(value)


def _enum(type_name: str, text: str, number: int, *, wide: bool = False) -> EnumValue:
    return EnumValue((type_name, *_ENUM_BASE), text, number, wide)


def _flags(
    type_name: str, members: Mapping[str, int], names: Iterable[str]
) -> EnumValue:
    """A [Flags] enum value; its text lists the members by ascending value."""
    chosen = sorted({members[n] for n in names if n in members})
    text = ", ".join(n for n, v in members.items() if v in chosen) or "None"
    return _enum(type_name, text, sum(chosen))


def _strings(items: Iterable[str], type_names: tuple[str, ...] = _STRINGS) -> Multi:
    return Multi(type_names, tuple(items))


_enum_lock = threading.Lock()
_enum_members: dict[tuple[tuple[str, ...], str, int, bool], PSEnumBase] = {}


class _LabEnumBase(PSEnumBase):
    """Enum members compare by identity, never as equal integers of another type."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _enum_member(value: EnumValue) -> PSEnumBase:
    """A psrpcore enum member that serializes as the value's Obj (TN, ToString, I32).

    One single-member class per distinct value, made once: psrpcore writes an enum's
    type chain and ToString only for enum members. Registered for no rehydration, so
    psrpcore clients in the same process still see plain deserialized objects.
    """
    key = (value.type_names, value.text, value.number, value.wide)
    with _enum_lock:
        member = _enum_members.get(key)
        if member is None:
            meta = type(_LabEnumBase)
            namespace = meta.__prepare__("LabEnum", (_LabEnumBase,))
            namespace[value.text] = value.number
            base = PSInt64 if value.wide else PSInt
            cls = meta("LabEnum", (_LabEnumBase,), namespace, base_type=base)
            cls = PSType(
                list(value.type_names), skip_inheritance=True, rehydrate=False
            )(cls)
            member = cls(value.number)
            _enum_members[key] = member
        return member


# Characters CLIXML carries as _xHHHH_: controls, and what UTF-16 needs pairs for.
_CLIXML_ESCAPE = re.compile("[\x00-\x1f\x7f-\x9f\U00010000-\U0010ffff]")


def _escape_text(text: str) -> str:
    """A ToString text in CLIXML's escaping, which psrpcore applies to strings only.

    Without it a carriage return would arrive as a plain line feed, and a control
    character would make the message invalid XML.
    """

    def code(match: re.Match[str]) -> str:
        units = match.group(0).encode("utf-16-be", errors="surrogatepass")
        return "".join(
            f"_x{units[i:i + 2].hex().upper()}_" for i in range(0, len(units), 2)
        )

    text = re.sub("_(x)", "_x005F_\\1", text, flags=re.IGNORECASE)
    return _CLIXML_ESCAPE.sub(code, text)


def to_psobject(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """The psrpcore value that serializes `value` as Exchange would send it.

    An object met twice (Exchange's Id and Identity) becomes the same psrpcore
    object, which the serializer writes once and then refers to with a Ref.
    """
    memo = {} if memo is None else memo
    if isinstance(value, EnumValue):
        return _enum_member(value)
    if isinstance(value, Multi):
        cached = memo.get(id(value))
        if cached is None:
            cached = PSList(to_psobject(item, memo) for item in value.items)
            cached.PSObject.type_names = list(value.type_names)
            memo[id(value)] = cached
        return cached
    if isinstance(value, LabObject):
        cached = memo.get(id(value))
        if cached is None:
            cached = PSObject()
            memo[id(value)] = cached
            meta = cached.PSObject
            meta.type_names = list(value.type_names)
            if value.text is not None:
                meta.to_string = _escape_text(value.text)
            for bag, properties in (
                (value.props, meta.adapted_properties),
                (value.extended, meta.extended_properties),
            ):
                for name, item in bag.items():
                    # Set after construction: PSNoteProperty(name, value) builds a
                    # throwaway PSObject per property.
                    prop = PSNoteProperty(name)
                    prop.set_value(to_psobject(item, memo), cached)
                    properties.append(prop)
        return cached
    if isinstance(value, dict):
        return {k: to_psobject(v, memo) for k, v in value.items()}
    return value


# Replaying Export-Clixml -----------------------------------------------------


def _strip(type_names: Iterable[str]) -> tuple[str, ...]:
    return tuple(t.removeprefix("Deserialized.") for t in type_names)


def from_psobject(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """The lab value for an object psrpcore deserialized (a file or pipeline input).

    Type names lose the "Deserialized." prefix psrpcore adds, enums (an integer with
    System.Enum in its type chain) become EnumValue again, lists keep their type chain.
    """
    memo = {} if memo is None else memo
    if id(value) in memo:
        return memo[id(value)]
    meta = getattr(value, "PSObject", None)
    if meta is None or isinstance(value, bool):
        return value
    type_names = _strip(meta.type_names)

    if isinstance(value, int) and "System.Enum" in type_names:
        text = meta.to_string if meta.to_string is not None else str(int(value))
        wide = isinstance(value, PSInt64)
        return EnumValue(type_names, text, int(value), wide)
    if isinstance(value, (PSListBase, list)):
        converted = Multi(type_names, tuple(from_psobject(v, memo) for v in value))
        memo[id(value)] = converted
        return converted
    if isinstance(value, dict):
        return {k: from_psobject(v, memo) for k, v in value.items()}
    if not meta.adapted_properties and not meta.extended_properties:
        if isinstance(value, (str, int, float, bytes, datetime.datetime, uuid.UUID)):
            return value
    obj = LabObject(type_names, meta.to_string)
    memo[id(value)] = obj
    for prop in meta.adapted_properties:
        obj.props[prop.name] = from_psobject(prop.get_value(value), memo)
    for prop in meta.extended_properties:
        obj.extended[prop.name] = from_psobject(prop.get_value(value), memo)
    return obj


def load_clixml(path: str | Path) -> tuple[Any, ...]:
    """The objects of an Export-Clixml file, read with psrpcore's deserializer."""
    text = Path(path).read_text(encoding="utf-8-sig")
    values = deserialize_clixml(text, None)  # type: ignore[arg-type]
    memo: dict[int, Any] = {}
    return tuple(from_psobject(v, memo) for v in values)


# Errors ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabError:
    """An error record as the lab writes it."""

    message: str
    exception: tuple[str, ...]  # .NET exception type chain, most derived first
    reason: str  # CategoryInfo.Reason: the exception's short name
    error_id: str  # FullyQualifiedErrorId
    category: ErrorCategory = ErrorCategory.NotSpecified
    target: Any = None
    activity: str = ""


class CmdletError(Exception):
    """A terminating error: the pipeline ends Failed with this record."""

    def __init__(self, error: LabError) -> None:
        super().__init__(error.message)
        self.error = error


def error_record(error: LabError) -> ErrorRecord:
    exception = NETException(Message=error.message, HResult=-2146233087)
    exception.PSObject.type_names = [
        *error.exception,
        "System.Exception",
        "System.Object",
    ]
    target = error.target
    return ErrorRecord(
        Exception=exception,
        CategoryInfo=ErrorCategoryInfo(
            Category=error.category,
            Activity=error.activity or None,
            Reason=error.reason,
            TargetName=text_of(target) if target is not None else None,
            TargetType="String" if target is not None else None,
        ),
        TargetObject=text_of(target) if target is not None else None,
        FullyQualifiedErrorId=error.error_id,
    )


_RUNTIME = ("System.Management.Automation.RuntimeException", "System.SystemException")


def _command_not_found(name: str) -> LabError:
    return LabError(
        message=(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, "
            "script file, or operable program. Check the spelling of the name, or if "
            "a path was included, verify that the path is correct and try again."
        ),
        exception=("System.Management.Automation.CommandNotFoundException", *_RUNTIME),
        reason="CommandNotFoundException",
        error_id="CommandNotFoundException",
        category=ErrorCategory.ObjectNotFound,
        target=name,
    )


def _scripts_not_allowed(endpoint: str) -> LabError:
    if endpoint == EXCHANGE:
        message = (
            "The syntax is not supported by this runspace. This can occur if the "
            "runspace is in no-language mode."
        )
    else:
        message = "The lab's domain controller runs cmdlets only, not scripts."
    return LabError(
        message=message,
        exception=("System.Management.Automation.ParseException", *_RUNTIME),
        reason="ParseException",
        error_id="ScriptsNotAllowed",
        category=ErrorCategory.ParserError,
    )


def _parameter_not_found(cmdlet: str, name: str) -> LabError:
    return LabError(
        message=f"A parameter cannot be found that matches parameter name '{name}'.",
        exception=(
            "System.Management.Automation.ParameterBindingException",
            *_RUNTIME,
        ),
        reason="ParameterBindingException",
        error_id=f"NamedParameterNotFound,{cmdlet}",
        category=ErrorCategory.InvalidArgument,
        activity=cmdlet,
    )


def _missing_parameter(cmdlet: str, name: str) -> LabError:
    return LabError(
        message=(
            "Cannot process command because of one or more missing mandatory "
            f"parameters: {name}."
        ),
        exception=(
            "System.Management.Automation.ParameterBindingException",
            *_RUNTIME,
        ),
        reason="ParameterBindingException",
        error_id=f"MissingMandatoryParameter,{cmdlet}",
        category=ErrorCategory.InvalidArgument,
        activity=cmdlet,
    )


def internal_error(cmdlet: str, detail: str) -> LabError:
    return LabError(
        message=f"The simulated server failed while running {cmdlet}: {detail}",
        exception=("System.InvalidOperationException", "System.SystemException"),
        reason="InvalidOperationException",
        error_id=f"LabInternalError,{cmdlet}",
        category=ErrorCategory.InvalidOperation,
        activity=cmdlet,
    )


# The cmdlets -----------------------------------------------------------------


@dataclass(frozen=True)
class ShellCall:
    """One pipeline run on a shell endpoint, as tests count and inspect them.

    `parameters` holds one dict per command: names as sent (without a leading dash;
    a positional argument under ""), values as plain Python. `errors` lists the
    CategoryInfo.Reason of every error record the pipeline wrote.
    """

    endpoint: str
    commands: tuple[str, ...]
    parameters: tuple[dict, ...]
    outcome: str  # Completed, Failed, Stopped, or Faulted (a [winrm] fault knob)
    errors: tuple[str, ...] = ()


class Sink(Protocol):
    """Where a running pipeline writes what is not output."""

    def error(self, error: LabError) -> None: ...

    def warning(self, message: str) -> None: ...


class _Invocation:
    """One command of a pipeline with its parameters bound by canonical name."""

    def __init__(
        self,
        spec: _Spec,
        parameters: Mapping[str, Any],
        sink: Sink,
        remoting: Mapping[str, Any],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.parameters = parameters
        self.sink = sink
        self.remoting = remoting

    def text(self, name: str) -> str | None:
        value = self.parameters.get(name)
        if value is None:
            return None
        if isinstance(value, list):
            return ",".join(text_of(v) for v in value)
        return text_of(value)

    def texts(self, name: str) -> list[str]:
        value = self.parameters.get(name)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        out = []
        for item in values:
            out.extend(p.strip() for p in text_of(item).split(",") if p.strip())
        return out

    def switch(self, name: str) -> bool:
        if name not in self.parameters:
            return False
        value = self.parameters[name]
        return value is None or bool(value)

    def result_size(self) -> int | None:
        """-ResultSize as a limit; None for Unlimited."""
        value = self.text("ResultSize")
        if value is None:
            return DEFAULT_RESULT_SIZE
        if value.casefold() == "unlimited":
            return None
        try:
            return max(0, int(value))
        except ValueError:
            raise CmdletError(
                LabError(
                    message=(
                        f"Cannot bind parameter 'ResultSize' to the value '{value}': "
                        "give a number or Unlimited."
                    ),
                    exception=(
                        "System.Management.Automation.ParameterBindingException",
                        *_RUNTIME,
                    ),
                    reason="ParameterBindingException",
                    error_id=f"CannotConvertArgumentNoMessage,{self.name}",
                    category=ErrorCategory.InvalidArgument,
                    activity=self.name,
                )
            ) from None

    def output(self, obj: LabObject) -> LabObject:
        """The object with the properties every remote object carries."""
        obj.extended.update(self.remoting)
        return obj

    def not_found(self, identity: str, where: str | None = None) -> None:
        """Exchange's non-terminating "couldn't be found" error."""
        if where:
            message = (
                f"The operation couldn't be performed because object '{identity}' "
                f"couldn't be found on '{where}'."
            )
        else:
            message = (
                f"The operation couldn't be performed because '{identity}' couldn't "
                "be found."
            )
        self.sink.error(
            _exchange_error(
                self, message, "ManagementObjectNotFoundException", identity
            )
        )


def _exchange_error(
    call: _Invocation,
    message: str,
    reason: str,
    target: Any,
    category: ErrorCategory = ErrorCategory.NotSpecified,
) -> LabError:
    """An error the way Exchange's cmdlets word its FullyQualifiedErrorId."""
    digest = hashlib.sha1(f"{call.name}/{reason}".encode()).hexdigest()[:8].upper()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%m/%d/%Y %I:%M:%S %p")
    server = call.remoting.get("PSComputerName", "")
    error_id = (
        f"[Server={server},RequestId={uuid.uuid4()},TimeStamp={stamp}] "
        f"[FailureCategory=Cmdlet-{reason}] {digest},{call.spec.task}"
    )
    return LabError(
        message=message,
        exception=(f"Microsoft.Exchange.Configuration.Tasks.{reason}", *_RUNTIME),
        reason=reason,
        error_id=error_id,
        category=category,
        target=target,
        activity=call.name,
    )


Runner = Callable[
    ["ShellOrganisation", _Invocation, Iterator[Any] | None], Iterator[Any]
]


@dataclass(frozen=True)
class _Spec:
    name: str
    run: Runner
    parameters: tuple[str, ...]  # canonical names; the first is positional
    task: str = ""  # the .NET class Exchange names in error ids
    pipeline_input: bool = False
    any_parameter: bool = False  # replayed cmdlets accept whatever is sent

    def canonical(self, name: str) -> str | None:
        wanted = name.casefold()
        for known in self.parameters:
            if known.casefold() == wanted:
                return known
        return None


@dataclass(frozen=True)
class PipelineRun:
    """A checked pipeline: what to log, and the output to pull one object at a time."""

    commands: tuple[str, ...]
    parameters: tuple[dict, ...]
    outputs: Iterator[Any]


def plain(value: Any) -> Any:
    """A parameter value as plain Python for ShellCall (strings, lists, numbers)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (PSListBase, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    return text_of(value)


@dataclass(frozen=True)
class _Person:
    """A user as Exchange and Active Directory show it."""

    upn: str
    sam: str
    display: str
    mailbox: LabMailbox | None


class ShellOrganisation:
    """The scenario as the shell endpoints show it; one per lab.

    `certificates(variant, host)` gives the chain the lab issues for a certificate
    variant (LabPki.server_credentials), so Get-ExchangeCertificate reports the very
    certificate the EWS front end presents. `overrides` maps cmdlet names to
    Export-Clixml files whose objects are served instead of the scenario's.
    """

    def __init__(
        self,
        scenario: Scenario,
        certificates: Callable[[str, str], ServerCredentials],
        overrides: Mapping[str, str | Path] | None = None,
    ) -> None:
        self.scenario = scenario
        self._certificates = certificates
        self._certificate_cache: dict[tuple[str, str], x509.Certificate] = {}
        self._lock = threading.Lock()

        servers = scenario.servers or (LabServer(),)
        self.servers = servers
        self.ad_domain = servers[0].domain
        self.netbios = self.ad_domain.partition(".")[0].upper() or "CONTOSO"
        self.org_name = self.netbios.capitalize()
        self.domain_dn = ",".join(f"DC={p}" for p in self.ad_domain.split("."))
        self.dc_fqdn = f"dc01.{self.ad_domain}"
        self.host_fqdn = servers[0].fqdn
        mailbox_servers = [s for s in servers if "Mailbox" in s.roles] or list(servers)
        self.mailbox_server = mailbox_servers[0]

        service_upn = scenario.service_upn
        own = scenario.mailbox_for(service_upn)
        if own is None:
            own = LabMailbox(
                primary=service_upn,
                display_name=service_upn.partition("@")[0],
                delegate_right="None",
                send_as=False,
                in_impersonation_scope=False,
            )
            self.mailboxes: tuple[LabMailbox, ...] = (*scenario.mailboxes, own)
        else:
            self.mailboxes = scenario.mailboxes
        self.service = self._person_for(own)
        self._index: dict[str, LabMailbox] = {}
        for mailbox in self.mailboxes:
            for key in self._mailbox_keys(mailbox):
                self._index.setdefault(key.casefold(), mailbox)

        self.overrides: dict[str, tuple[Any, ...]] = {}
        for name, path in (overrides or {}).items():
            self.overrides[name.casefold()] = load_clixml(path)
            logger.debug("shell: %s answers from %s", name, path)

    # Names -------------------------------------------------------------------

    def _person_for(self, mailbox: LabMailbox) -> _Person:
        local = mailbox.primary.partition("@")[0]
        return _Person(
            upn=mailbox.primary,
            sam=local[:20],
            display=mailbox.display_name or local,
            mailbox=mailbox,
        )

    def display_name(self, mailbox: LabMailbox) -> str:
        return mailbox.display_name or mailbox.alias

    def ou_path(self, mailbox: LabMailbox) -> str:
        return f"{self.ad_domain}/Users/{self.display_name(mailbox)}"

    def user_dn(self, name: str) -> str:
        return f"CN={name},CN=Users,{self.domain_dn}"

    def _mailbox_keys(self, mailbox: LabMailbox) -> Iterator[str]:
        person = self._person_for(mailbox)
        yield from mailbox.addresses()
        yield mailbox.alias
        yield self.ou_path(mailbox)
        yield self.display_name(mailbox)
        yield f"{self.netbios}\\{person.sam}"
        yield self.user_dn(self.display_name(mailbox))

    def find_mailbox(self, identity: str) -> LabMailbox | None:
        return self._index.get(identity.strip().casefold())

    def guid(self, *parts: str) -> uuid.UUID:
        """A GUID that stays the same for the same object across runs."""
        return uuid.uuid5(uuid.NAMESPACE_URL, "/".join((self.scenario.name, *parts)))

    def person(self, upn: str) -> _Person:
        mailbox = self.scenario.mailbox_for(upn)
        if upn.casefold() == self.service.upn.casefold():
            return self.service
        if mailbox is not None:
            return self._person_for(mailbox)
        local = upn.partition("@")[0]
        return _Person(upn=upn, sam=local[:20], display=local, mailbox=None)

    def ad_id(self, text: str, name: str, dn: str, parent: str = "") -> LabObject:
        """An ADObjectId: its ToString is the identity Exchange shows."""
        return LabObject(
            _AD_OBJECT_ID,
            text,
            {
                "IsDeleted": False,
                "Rdn": dn.partition(",")[0],
                "Parent": parent,
                "DistinguishedName": dn,
                "DomainId": self.ad_domain,
                "ObjectGuid": self.guid("dn", dn),
                "Name": name,
            },
        )

    def config_dn(self, *containers: str) -> str:
        path = ",".join(f"CN={c}" for c in containers)
        return (
            f"{path},CN={self.org_name},CN=Microsoft Exchange,CN=Services,"
            f"CN=Configuration,{self.domain_dn}"
        )

    def certificate(self, variant: str, host: str) -> x509.Certificate:
        key = (variant, host)
        with self._lock:
            cached = self._certificate_cache.get(key)
        if cached is not None:
            return cached
        credentials = self._certificates(variant, host)
        leaf = x509.load_pem_x509_certificates(credentials.chain_pem.read_bytes())[0]
        with self._lock:
            self._certificate_cache[key] = leaf
        return leaf

    # Pipelines ---------------------------------------------------------------

    def open_pipeline(
        self,
        endpoint: str,
        commands: Sequence[Any],
        input_objects: Sequence[Any] | None,
        sink: Sink,
        runspace_id: uuid.UUID,
    ) -> PipelineRun:
        """Check a pipeline of psrpcore Commands and return its lazy output.

        Raises CmdletError, before anything runs, for a script, an unknown or refused
        command, an unknown parameter or a missing mandatory one.
        """
        names = command_names(commands)
        parameters = tuple(parameters_of(c) for c in commands)
        statements: list[list[_Invocation]] = [[]]
        remoting = {
            "PSComputerName": (
                self.host_fqdn if endpoint == EXCHANGE else self.dc_fqdn
            ),
            "RunspaceId": runspace_id,
            "PSShowComputerName": False,
        }
        failure: LabError | None = None
        for command in commands:
            try:
                statements[-1].append(self._bind(endpoint, command, sink, remoting))
            except CmdletError as error:
                failure = failure or error.error
            if command.end_of_statement:
                statements.append([])
        if failure is not None:
            raise CmdletError(failure)
        outputs = self._run(
            [s for s in statements if s],
            None if input_objects is None else iter(input_objects),
        )
        return PipelineRun(names, parameters, outputs)

    def _bind(
        self, endpoint: str, command: Any, sink: Sink, remoting: Mapping[str, Any]
    ) -> _Invocation:
        if command.is_script:
            raise CmdletError(_scripts_not_allowed(endpoint))
        name = str(command.command_text).strip()
        spec = self._spec(endpoint, name)
        if spec is None:
            raise CmdletError(_command_not_found(name))
        bound: dict[str, Any] = {}
        for raw_name, value in command.parameters:
            if raw_name is None:
                canonical = spec.parameters[0] if spec.parameters else None
                if canonical is None:
                    raise CmdletError(_parameter_not_found(spec.name, text_of(value)))
            else:
                given = str(raw_name).lstrip("-")
                canonical = spec.canonical(given)
                if canonical is None:
                    if not spec.any_parameter:
                        raise CmdletError(_parameter_not_found(spec.name, given))
                    canonical = given
            bound[canonical] = value
        return _Invocation(spec, bound, sink, remoting)

    def _spec(self, endpoint: str, name: str) -> _Spec | None:
        """The command a name stands for on an endpoint; None when there is none.

        The lab is read-only: only Get- and Test- commands exist, whatever a
        replayed file is named after.
        """
        wanted = name.casefold()
        if not is_read_only(wanted):
            return None
        spec = (EXCHANGE_CMDLETS if endpoint == EXCHANGE else DC_CMDLETS).get(wanted)
        if endpoint != EXCHANGE or wanted not in self.overrides:
            return spec
        objects = self.overrides[wanted]
        if spec is None:
            return _Spec(name, _replayer(objects), (), any_parameter=True)
        return _Spec(spec.name, _replayer(objects), spec.parameters, spec.task, True)

    def _run(
        self, statements: list[list[_Invocation]], upstream: Iterator[Any] | None
    ) -> Iterator[Any]:
        for statement in statements:
            stream, upstream = upstream, None
            for call in statement:
                if stream is not None and not call.spec.pipeline_input:
                    _refuse_input(call, stream)
                    stream = None
                if stream is None:
                    for mandatory in MANDATORY.get(call.spec.name, ()):
                        if mandatory not in call.parameters:
                            raise CmdletError(_missing_parameter(call.name, mandatory))
                stream = call.spec.run(self, call, stream)
            if stream is not None:
                yield from stream


def command_names(commands: Sequence[Any]) -> tuple[str, ...]:
    """The names a pipeline's commands log under; a script is "<script>"."""
    return tuple("<script>" if c.is_script else str(c.command_text) for c in commands)


def parameters_of(command: Any) -> dict:
    """A command's parameters as ShellCall records them."""
    if command.is_script:
        return {"Script": str(command.command_text)}
    out: dict = {}
    for name, value in command.parameters:
        key = "" if name is None else str(name).lstrip("-")
        out[key] = plain(value)
    return out


def _refuse_input(call: _Invocation, stream: Iterator[Any]) -> None:
    """Input for a command that takes none: one error per object, no output."""
    for item in stream:
        call.sink.error(
            LabError(
                message=(
                    "The input object cannot be bound to any parameters for the "
                    "command either because the command does not take pipeline "
                    "input or the input and its properties do not match any of "
                    "the parameters that take pipeline input."
                ),
                exception=(
                    "System.Management.Automation.ParameterBindingException",
                    *_RUNTIME,
                ),
                reason="ParameterBindingException",
                error_id=f"InputObjectNotBound,{call.name}",
                category=ErrorCategory.InvalidArgument,
                target=text_of(item),
                activity=call.name,
            )
        )


def _replayer(objects: tuple[Any, ...]) -> Runner:
    def run(
        org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
    ) -> Iterator[Any]:
        for _ in stream or ():
            pass  # replayed answers ignore their input
        yield from objects

    return run


def _matches(pattern: str, *candidates: str) -> bool:
    wanted = pattern.casefold()
    for candidate in candidates:
        folded = candidate.casefold()
        if folded == wanted or (
            ("*" in wanted) and fnmatch.fnmatchcase(folded, wanted)
        ):
            return True
    return False


def _inputs(
    call: _Invocation, stream: Iterator[Any] | None, parameter: str = "Identity"
) -> Iterator[tuple[str, Any]]:
    """The identities a command works on: from -Identity or from each input object."""
    if stream is None:
        value = call.text(parameter)
        if value is not None:
            yield value, None
        return
    for item in stream:
        if isinstance(item, LabObject):
            identity = item.get("Identity")
            yield text_of(identity if identity is not None else item), item
        else:
            yield text_of(item), item


def _limit(call: _Invocation, items: Iterable[Any]) -> Iterator[Any]:
    """Apply -ResultSize: Exchange stops at 1000 and warns when more exist."""
    limit = call.result_size()
    for count, item in enumerate(items):
        if limit is not None and count >= limit:
            if limit == DEFAULT_RESULT_SIZE and call.text("ResultSize") is None:
                call.sink.warning(
                    f"Only the first {DEFAULT_RESULT_SIZE} items were returned, "
                    "which is the default size. Pass -ResultSize Unlimited (or a "
                    "larger number) to get every item."
                )
            return
        yield item


# Servers, virtual directories and certificates ---------------------------------

_SERVER_ROLES = {
    "Mailbox": 2,
    "ClientAccess": 4,
    "UnifiedMessaging": 16,
    "HubTransport": 32,
    "Edge": 64,
}
_EDITIONS = {
    "Unknown": 0,
    "Standard": 1,
    "StandardEvaluation": 2,
    "Enterprise": 3,
    "EnterpriseEvaluation": 4,
    "Coexistence": 5,
}
_AUTH_METHODS = {
    "Basic": 0,
    "Digest": 1,
    "Ntlm": 2,
    "Fba": 3,
    "WindowsIntegrated": 4,
    "WSSecurity": 7,
    "OAuth": 10,
}
_ALLOWED_SERVICES = {
    "IMAP": 1,
    "POP": 2,
    "UM": 4,
    "IIS": 8,
    "SMTP": 16,
    "Federation": 32,
    "UMCallRouter": 64,
}
_CA_TYPES = {
    "None": 0,
    "Registry": 1,
    "ThirdParty": 2,
    "Enterprise": 3,
    "GroupPolicy": 4,
    "Unknown": 5,
}
_CERTIFICATE_STATUS = {"Unknown": 0, "Valid": 1, "Revoked": 2, "DateInvalid": 3}
_SYSCONF = "Microsoft.Exchange.Data.Directory.SystemConfiguration"


def _version_parts(build: str) -> tuple[int, int, int, int]:
    parts = [int(p) for p in build.split(".") if p.strip().isdigit()]
    parts += [0] * (4 - len(parts))
    return parts[0], parts[1], parts[2], parts[3]


def server_version(build: str) -> LabObject:
    """Exchange's ServerVersion: ToString "Version 15.1 (Build 2507.39)"."""
    major, minor, build_number, revision = _version_parts(build)
    return LabObject(
        ("Microsoft.Exchange.Data.ServerVersion", "System.Object"),
        f"Version {major}.{minor} (Build {build_number}.{revision})",
        {
            "Major": major,
            "Minor": minor,
            "Build": build_number,
            "Revision": revision,
            "FilePatchLevelDescription": None,
        },
    )


def _build_of(org: ShellOrganisation, server: LabServer) -> str:
    return server.version or org.scenario.server_version


def _created(org: ShellOrganisation, *parts: str) -> datetime.datetime:
    """A stable creation time a few years back, different per object."""
    days = int(org.guid(*parts).hex[:4], 16) % 900
    base = datetime.datetime(2021, 3, 1, 9, 30, tzinfo=datetime.UTC)
    return base + datetime.timedelta(days=days, minutes=days * 7)


def _servers(
    org: ShellOrganisation, call: _Invocation, parameter: str
) -> list[LabServer]:
    wanted = call.text(parameter)
    if wanted is None:
        return list(org.servers)
    chosen = [s for s in org.servers if _matches(wanted, s.name, s.fqdn)]
    if not chosen:
        call.not_found(wanted, org.dc_fqdn)
    return chosen


def _get_exchange_server(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    for server in _servers(org, call, "Identity"):
        yield call.output(_exchange_server(org, server))


def _exchange_server(org: ShellOrganisation, server: LabServer) -> LabObject:
    build = _build_of(org, server)
    major, minor, _, _ = _version_parts(build)
    roles = set(server.roles)
    mailbox = "Mailbox" in roles
    modern = major >= 15
    dn = org.config_dn(
        server.name,
        "Servers",
        "Exchange Administrative Group (FYDIBOHF23SPDLT)",
        "Administrative Groups",
    )
    identity = org.ad_id(server.name, server.name, dn, "Servers")
    created = _created(org, "server", server.name)
    role_values = dict(_SERVER_ROLES)
    for extra in sorted(roles - role_values.keys()):
        role_values[extra] = 1 << (8 + len(role_values))
    site_dn = f"CN=Default-First-Site-Name,CN=Sites,CN=Configuration,{org.domain_dn}"
    props: dict[str, Any] = {
        "Name": server.name,
        "Domain": server.domain,
        "Edition": _enum(
            "Microsoft.Exchange.Data.ServerEditionType",
            server.edition,
            _EDITIONS.get(server.edition, 0),
        ),
        "Fqdn": server.fqdn,
        "IsHubTransportServer": "HubTransport" in roles or (mailbox and modern),
        "IsClientAccessServer": "ClientAccess" in roles
        or (mailbox and (major, minor) >= (15, 1)),
        "IsEdgeServer": "Edge" in roles,
        "IsMailboxServer": mailbox,
        "IsE14OrLater": major >= 14,
        "IsE15OrLater": modern,
        "IsProvisionedServer": False,
        "IsFrontendTransportServer": mailbox and modern,
        "OrganizationalUnit": f"{org.ad_domain}/{server.name}",
        "AdminDisplayVersion": server_version(build),
        "Site": org.ad_id(
            f"{org.ad_domain}/Configuration/Sites/Default-First-Site-Name",
            "Default-First-Site-Name",
            site_dn,
            f"{org.ad_domain}/Configuration/Sites",
        ),
        "ServerRole": _flags(f"{_SYSCONF}.ServerRole", role_values, server.roles),
        "ErrorReportingEnabled": False,
        "Identity": identity,
        "IsValid": True,
        "DistinguishedName": dn,
        "Guid": org.guid("server", server.name),
        "ObjectClass": _strings(("top", "server", "msExchExchangeServer")),
        "WhenChanged": created,
        "WhenCreated": created,
        "WhenChangedUTC": created,
        "WhenCreatedUTC": created,
        "Id": identity,
        "OriginatingServer": org.dc_fqdn,
    }
    type_names = (
        "Microsoft.Exchange.Data.Directory.Management.ExchangeServer",
        *_PRESENTATION,
        *_AD_OBJECT,
    )
    return LabObject(type_names, server.name, props)


def _get_web_services_virtual_directory(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    identity = call.text("Identity")
    found = False
    for server in _servers(org, call, "Server"):
        vdir = _ews_vdir(org, server)
        if identity is not None and not _matches(identity, vdir.text or ""):
            continue
        found = True
        yield call.output(vdir)
    if identity is not None and not found:
        call.not_found(identity, org.dc_fqdn)


def _auth_methods(server: LabServer) -> Multi:
    names = ["Basic"] if server.ews_basic else []
    if server.ews_windows:
        names += ["Ntlm", "WindowsIntegrated"]
    names += ["WSSecurity", "OAuth"]
    type_name = f"{_SYSCONF}.AuthenticationMethod"
    chain = (
        f"Microsoft.Exchange.Data.Directory.ADMultiValuedProperty`1[[{type_name}, "
        "Microsoft.Exchange.Data.Directory, Version=15.0.0.0, Culture=neutral, "
        "PublicKeyToken=31bf3856ad364e35]]",
        f"Microsoft.Exchange.Data.MultiValuedProperty`1[[{type_name}, "
        "Microsoft.Exchange.Data.Directory, Version=15.0.0.0, Culture=neutral, "
        "PublicKeyToken=31bf3856ad364e35]]",
        *_MULTI_BASE,
    )
    return Multi(chain, tuple(_enum(type_name, n, _AUTH_METHODS[n]) for n in names))


def _ews_vdir(org: ShellOrganisation, server: LabServer) -> LabObject:
    name = "EWS (Default Web Site)"
    text = f"{server.name}\\{name}"
    internal = server.ews_internal_url or f"https://{server.fqdn}/EWS/Exchange.asmx"
    external = (
        server.ews_external_url or f"https://{org.scenario.ews_host}/EWS/Exchange.asmx"
    )
    server_dn = org.config_dn(
        server.name,
        "Servers",
        "Exchange Administrative Group (FYDIBOHF23SPDLT)",
        "Administrative Groups",
    )
    dn = f"CN={name},CN=HTTP,CN=Protocols,{server_dn}"
    identity = org.ad_id(text, name, dn, f"{server.name}\\HTTP")
    created = _created(org, "vdir", server.name)
    props: dict[str, Any] = {
        "CertificateAuthentication": None,
        "InternalNLBBypassUrl": None,
        "GzipLevel": _enum(f"{_SYSCONF}.GzipLevel", "Low", 1),
        "MRSProxyEnabled": False,
        "Name": name,
        "InternalAuthenticationMethods": _auth_methods(server),
        "ExternalAuthenticationMethods": _auth_methods(server),
        "WSSecurityAuthentication": True,
        "LiveIdBasicAuthentication": False,
        "BasicAuthentication": server.ews_basic,
        "DigestAuthentication": False,
        "WindowsAuthentication": server.ews_windows,
        "OAuthAuthentication": True,
        "AdfsAuthentication": False,
        "MetabasePath": f"IIS://{server.fqdn}/W3SVC/1/ROOT/EWS",
        "Path": (
            "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\"
            "HttpProxy\\EWS"
        ),
        "ExtendedProtectionTokenChecking": _enum(
            f"{_SYSCONF}.ExtendedProtectionTokenCheckingMode", "None", 0
        ),
        "AdminDisplayVersion": server_version(_build_of(org, server)),
        "Server": org.ad_id(server.name, server.name, server_dn, "Servers"),
        "InternalUrl": PSUri(internal) if internal.casefold() != "none" else None,
        "ExternalUrl": PSUri(external) if external.casefold() != "none" else None,
        "AdminDisplayName": "",
        "DistinguishedName": dn,
        "Identity": identity,
        "Guid": org.guid("vdir", server.name),
        "WhenChanged": created,
        "WhenCreated": created,
        "Id": identity,
        "OriginatingServer": org.dc_fqdn,
        "IsValid": True,
    }
    type_names = (
        f"{_SYSCONF}.ADWebServicesVirtualDirectory",
        f"{_SYSCONF}.ADExchangeServiceVirtualDirectory",
        f"{_SYSCONF}.ExchangeVirtualDirectory",
        f"{_SYSCONF}.ADVirtualDirectory",
        f"{_SYSCONF}.ADConfigurationObject",
        *_AD_OBJECT,
    )
    return LabObject(type_names, text, props)


def _get_exchange_certificate(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    thumbprint = call.text("Thumbprint")
    identity = call.text("Identity")
    found = False
    # Without -Server, Exchange lists the store of the server the session is on.
    servers = (
        _servers(org, call, "Server")
        if call.text("Server") is not None
        else [org.servers[0]]
    )
    for server in servers:
        for certificate in _certificates(org, server):
            if thumbprint is not None and not _matches(
                thumbprint.replace(" ", ""), certificate.props["Thumbprint"]
            ):
                continue
            if identity is not None and not _matches(
                identity, certificate.props["Identity"], certificate.props["Thumbprint"]
            ):
                continue
            found = True
            yield call.output(certificate)
    wanted = thumbprint or identity
    if wanted is not None and not found:
        call.not_found(wanted, org.host_fqdn)


def _certificates(org: ShellOrganisation, server: LabServer) -> Iterator[LabObject]:
    iis = server.iis_certificate or org.scenario.certificate
    services = (
        ("IMAP", "POP", "IIS", "SMTP") if iis == "self_signed" else ("IIS", "SMTP")
    )
    yield _certificate(org, server, iis, org.scenario.ews_host, services)
    for variant in server.other_certificates:
        extra = ("SMTP",) if variant == "self_signed" else ()
        yield _certificate(org, server, variant, server.fqdn, extra)


def _dotnet_name(name: x509.Name) -> str:
    """An X.500 name the way .NET prints it: most specific first, ", " between."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def _dotnet_time(moment: datetime.datetime) -> str:
    return f"{moment.month}/{moment.day}/{moment.year} {moment:%H:%M:%S}"


def _signature_name(leaf: x509.Certificate) -> str:
    """The signature algorithm as .NET's FriendlyName shows it, e.g. sha256RSA."""
    try:
        digest = leaf.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return "unknown"
    return f"{digest.name if digest else 'none'}RSA"


def _certificate(
    org: ShellOrganisation,
    server: LabServer,
    variant: str,
    host: str,
    services: Sequence[str],
) -> LabObject:
    leaf = org.certificate(variant, host)
    der = leaf.public_bytes(serialization.Encoding.DER)
    thumbprint = hashlib.sha1(der).hexdigest().upper()
    subject = _dotnet_name(leaf.subject)
    issuer = _dotnet_name(leaf.issuer)
    serial = f"{leaf.serial_number:X}"
    not_before = leaf.not_valid_before_utc
    not_after = leaf.not_valid_after_utc
    self_signed = leaf.issuer == leaf.subject
    try:
        names = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if self_signed:
        root = "Registry"
    elif variant == "internal_ca":
        root = "Enterprise"
    else:
        root = "ThirdParty"
    now = datetime.datetime.now(datetime.UTC)
    status = "Valid" if not_before <= now <= not_after else "DateInvalid"
    public_key = leaf.public_key()
    key_size = public_key.key_size if isinstance(public_key, rsa.RSAPublicKey) else 0
    text = (
        f"[Subject]\r\n  {subject}\r\n\r\n[Issuer]\r\n  {issuer}\r\n\r\n"
        f"[Serial Number]\r\n  {serial}\r\n\r\n"
        f"[Not Before]\r\n  {_dotnet_time(not_before)}\r\n\r\n"
        f"[Not After]\r\n  {_dotnet_time(not_after)}\r\n\r\n"
        f"[Thumbprint]\r\n  {thumbprint}\r\n"
    )
    tasks = "Microsoft.Exchange.Management.SystemConfigurationTasks"
    props: dict[str, Any] = {
        "RawData": der,
        "Identity": f"{server.name}\\{thumbprint}",
        "Thumbprint": thumbprint,
        "Subject": subject,
        "Issuer": issuer,
        "SerialNumber": serial,
        "NotBefore": not_before,
        "NotAfter": not_after,
        "FriendlyName": "Microsoft Exchange" if self_signed else host,
        "CertificateDomains": _strings(
            names,
            (
                "System.Collections.Generic.List`1[[Microsoft.Exchange.Data."
                "SmtpDomainWithSubdomains, Microsoft.Exchange.Data, Version=15.0.0.0, "
                "Culture=neutral, PublicKeyToken=31bf3856ad364e35]]",
                "System.Object",
            ),
        ),
        "Services": _flags(f"{tasks}.AllowedServices", _ALLOWED_SERVICES, services),
        "IsSelfSigned": self_signed,
        "RootCAType": _enum(f"{tasks}.CertificateAuthorityType", root, _CA_TYPES[root]),
        "Status": _enum(
            f"{tasks}.CertificateStatus", status, _CERTIFICATE_STATUS[status]
        ),
        "HasPrivateKey": True,
        "PrivateKeyExportable": False,
        "PublicKeySize": key_size,
        "SignatureAlgorithm": _signature_name(leaf),
        "Version": leaf.version.value + 1,
    }
    type_names = (
        f"{tasks}.ExchangeCertificate",
        "System.Security.Cryptography.X509Certificates.X509Certificate2",
        "System.Security.Cryptography.X509Certificates.X509Certificate",
        "System.Object",
    )
    return LabObject(type_names, text, props)


# Role-based access control -----------------------------------------------------

_ORGANIZATION_MANAGEMENT = "Organization Management"
# Roles the built-in role group holds; ApplicationImpersonation only as delegating.
_ORG_MANAGEMENT_ROLES = (
    "Address Lists",
    "Distribution Groups",
    "Exchange Server Certificates",
    "Exchange Servers",
    "Exchange Virtual Directories",
    "Mail Recipient Creation",
    "Mail Recipients",
    "Organization Client Access",
    "Organization Configuration",
    "Recipient Policies",
    "Role Management",
    "Security Group Creation and Membership",
    "User Options",
    "View-Only Configuration",
    "View-Only Recipients",
)
_ORG_MANAGEMENT_DELEGATING = ("ApplicationImpersonation", "Mailbox Import Export")
_ASSIGNEE_TYPES = {
    "User": 0,
    "SecurityGroup": 1,
    "RoleAssignmentPolicy": 2,
    "ForeignSecurityPrincipal": 8,
    "RoleGroup": 10,
    "LinkedRoleGroup": 11,
}
_WRITE_SCOPES = {
    "None": 0,
    "NotApplicable": 1,
    "Organization": 2,
    "MyGAL": 3,
    "Self": 4,
    "OU": 7,
    "CustomRecipientScope": 8,
    "ExclusiveRecipientScope": 10,
}
_DELEGATION = {"Regular": 0, "DelegatingOrgWide": 1, "Delegating": 2}
_ASSIGNMENT_METHODS = {"Direct": 0, "SecurityGroup": 1, "RoleGroup": 2}
_RBAC = "Microsoft.Exchange.Data.Directory.SystemConfiguration"


@dataclass(frozen=True)
class _Assignment:
    assignment: LabRoleAssignment
    delegation: str = "Regular"


def _assignments(org: ShellOrganisation) -> list[_Assignment]:
    found = [_Assignment(a) for a in org.scenario.effective_assignments()]
    if any(g.name == _ORGANIZATION_MANAGEMENT for g in org.scenario.groups):
        for role in _ORG_MANAGEMENT_ROLES:
            found.append(
                _Assignment(
                    LabRoleAssignment(
                        name=f"{role}-{_ORGANIZATION_MANAGEMENT}",
                        role=role,
                        assignee=_ORGANIZATION_MANAGEMENT,
                        assignee_type="RoleGroup",
                    )
                )
            )
        for role in _ORG_MANAGEMENT_DELEGATING:
            found.append(
                _Assignment(
                    LabRoleAssignment(
                        name=f"{role}-{_ORGANIZATION_MANAGEMENT}-Delegating",
                        role=role,
                        assignee=_ORGANIZATION_MANAGEMENT,
                        assignee_type="RoleGroup",
                    ),
                    delegation="DelegatingOrgWide",
                )
            )
    return found


def _group(org: ShellOrganisation, name: str) -> LabGroup | None:
    for group in org.scenario.groups:
        if group.name.casefold() == name.casefold():
            return group
    return None


def _members(
    org: ShellOrganisation, group: LabGroup, seen: frozenset[str] = frozenset()
) -> list[_Person]:
    """The users in a group, nested groups expanded (each group once)."""
    people: list[_Person] = []
    for member in group.members:
        nested = _group(org, member) if "@" not in member else None
        if nested is not None:
            if nested.name.casefold() not in seen:
                people += _members(org, nested, seen | {group.name.casefold()})
        else:
            people.append(org.person(member))
    unique: dict[str, _Person] = {}
    for person in people:
        unique.setdefault(person.upn.casefold(), person)
    return list(unique.values())


def _effective_users(
    org: ShellOrganisation, assignment: LabRoleAssignment
) -> list[_Person]:
    if assignment.assignee_type == "User":
        return [org.person(assignment.assignee)]
    group = _group(org, assignment.assignee)
    return _members(org, group) if group is not None else []


def _person_matches(org: ShellOrganisation, person: _Person, wanted: str) -> bool:
    return _matches(
        wanted,
        person.upn,
        person.sam,
        person.display,
        f"{org.netbios}\\{person.sam}",
        f"{org.ad_domain}/Users/{person.display}",
    )


def _person_id(org: ShellOrganisation, person: _Person) -> LabObject:
    return org.ad_id(
        f"{org.ad_domain}/Users/{person.display}",
        person.sam,
        org.user_dn(person.display),
        f"{org.ad_domain}/Users",
    )


def _get_management_role_assignment(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    role = call.text("Role")
    assignee = call.text("RoleAssignee")
    identity = call.text("Identity")
    effective = call.switch("GetEffectiveUsers")
    delegating = call.parameters.get("Delegating")
    enabled = call.parameters.get("Enabled")
    kind = call.text("RoleAssigneeType")
    for entry in _assignments(org):
        item = entry.assignment
        if role is not None and not _matches(role, item.role):
            continue
        if identity is not None and not _matches(identity, item.name):
            continue
        if enabled is not None and bool(enabled) != item.enabled:
            continue
        if delegating is not None and bool(delegating) != (
            entry.delegation != "Regular"
        ):
            continue
        if kind is not None and not _matches(kind, item.assignee_type):
            continue
        users = _effective_users(org, item)
        if assignee is not None:
            direct = item.assignee_type != "User" and _matches(assignee, item.assignee)
            direct = direct or (
                item.assignee_type == "User"
                and _person_matches(org, org.person(item.assignee), assignee)
            )
            via = [p for p in users if _person_matches(org, p, assignee)]
            if not direct and not via:
                continue
            if effective and not direct:
                users = via
        if effective:
            for person in users:
                yield call.output(_assignment_row(org, entry, users, person))
        else:
            yield call.output(_assignment_row(org, entry, users, None))


def _assignment_row(
    org: ShellOrganisation,
    entry: _Assignment,
    users: list[_Person],
    person: _Person | None,
) -> LabObject:
    item = entry.assignment
    rbac_dn = org.config_dn(item.name, "Role Assignments", "RBAC")
    identity = org.ad_id(item.name, item.name, rbac_dn, "Role Assignments")
    if item.assignee_type == "User":
        assignee_person = org.person(item.assignee)
        assignee_name = assignee_person.sam
        assignee_id = _person_id(org, assignee_person)
        method = "Direct"
    else:
        assignee_name = item.assignee
        assignee_id = org.ad_id(
            item.assignee,
            item.assignee,
            f"CN={item.assignee},OU=Microsoft Exchange Security Groups,{org.domain_dn}",
            f"{org.ad_domain}/Microsoft Exchange Security Groups",
        )
        method = "RoleGroup" if item.assignee_type == "RoleGroup" else "SecurityGroup"
    if person is not None:
        effective_name = person.display
        user = _person_id(org, person)
    elif item.assignee_type == "User":
        effective_name = users[0].display if users else assignee_name
        user = assignee_id
    else:
        effective_name = "All Group Members"
        user = assignee_id
    scope_kind = "CustomRecipientScope" if item.scope else "Organization"
    scope = (
        org.ad_id(
            item.scope,
            item.scope,
            org.config_dn(item.scope, "Scopes", "RBAC"),
            "Scopes",
        )
        if item.scope
        else None
    )
    props: dict[str, Any] = {
        "User": user,
        "AssignmentMethod": _enum(
            f"{_RBAC}.AssignmentMethod",
            method,
            _ASSIGNMENT_METHODS[method],
        ),
        "Identity": identity,
        "EffectiveUserName": effective_name,
        "AssignmentChain": None,
        "RoleAssigneeType": _enum(
            f"{_RBAC}.RoleAssigneeType",
            item.assignee_type,
            _ASSIGNEE_TYPES.get(item.assignee_type, 0),
        ),
        "RoleAssignee": assignee_id,
        "Role": org.ad_id(
            item.role, item.role, org.config_dn(item.role, "Roles", "RBAC"), "Roles"
        ),
        "RoleAssignmentDelegationType": _enum(
            f"{_RBAC}.RoleAssignmentDelegationType",
            entry.delegation,
            _DELEGATION[entry.delegation],
        ),
        "CustomRecipientWriteScope": scope,
        "CustomConfigWriteScope": None,
        "CustomResourceScope": None,
        "RecipientReadScope": _enum(
            f"{_RBAC}.ScopeType", "Organization", _WRITE_SCOPES["Organization"]
        ),
        "ConfigReadScope": _enum(f"{_RBAC}.ScopeType", "OrganizationConfig", 11),
        "RecipientWriteScope": _enum(
            f"{_RBAC}.RecipientWriteScopeType", scope_kind, _WRITE_SCOPES[scope_kind]
        ),
        "ConfigWriteScope": _enum(
            f"{_RBAC}.ConfigWriteScopeType", "OrganizationConfig", 10
        ),
        "Enabled": item.enabled,
        "RoleAssigneeName": assignee_name,
        "IsValid": True,
        "Name": item.name,
        "DistinguishedName": rbac_dn,
        "Guid": org.guid("assignment", item.name),
        "Id": identity,
    }
    type_names = (
        "Microsoft.Exchange.Data.Directory.Management.ExchangeRoleAssignmentPresentation",
        *_PRESENTATION,
        *_AD_OBJECT,
    )
    return LabObject(type_names, item.name, props)


def _get_management_scope(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    identity = call.text("Identity")
    found = False
    for scope in org.scenario.effective_scopes():
        if identity is not None and not _matches(identity, scope.name):
            continue
        found = True
        dn = org.config_dn(scope.name, "Scopes", "RBAC")
        scope_id = org.ad_id(scope.name, scope.name, dn, "Scopes")
        props: dict[str, Any] = {
            "RecipientRoot": None,
            "RecipientFilter": scope.filter,
            "ServerFilter": None,
            "DatabaseFilter": None,
            "ScopeRestrictionType": _enum(
                f"{_RBAC}.ScopeRestrictionType", "RecipientScope", 1
            ),
            "Exclusive": False,
            "Name": scope.name,
            "Identity": scope_id,
            "DistinguishedName": dn,
            "Guid": org.guid("scope", scope.name),
            "Id": scope_id,
            "IsValid": True,
        }
        type_names = (
            f"{_RBAC}.ManagementScope",
            f"{_SYSCONF}.ADConfigurationObject",
            *_AD_OBJECT,
        )
        yield call.output(LabObject(type_names, scope.name, props))
    if identity is not None and not found:
        call.not_found(identity, org.dc_fqdn)


# Recipients ------------------------------------------------------------------

_RECIPIENT_TYPE_DETAILS = {
    "UserMailbox": 1,
    "LinkedMailbox": 2,
    "SharedMailbox": 4,
    "RoomMailbox": 16,
    "EquipmentMailbox": 32,
}
_RECIPIENT = "Microsoft.Exchange.Data.Directory.Recipient"
_DETAILS_CLAUSE = r"\(?\s*RecipientTypeDetails\s+-eq\s+['\"](\w+)['\"]\s*\)?"
_DETAILS_FILTER = re.compile(
    rf"\s*{_DETAILS_CLAUSE}(?:\s+-or\s+{_DETAILS_CLAUSE})*\s*", re.IGNORECASE
)


def _normal_filter(text: str) -> str:
    text = " ".join(text.split()).casefold()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text


def _filtered_mailboxes(
    org: ShellOrganisation, call: _Invocation, opath: str
) -> list[LabMailbox]:
    """The mailboxes an OPATH filter selects, for the filters the lab understands."""
    wanted = _normal_filter(opath)
    for scope in org.scenario.effective_scopes():
        if _normal_filter(scope.filter) == wanted:
            return [m for m in org.scenario.mailboxes if m.in_impersonation_scope]
    if _DETAILS_FILTER.fullmatch(opath):
        kinds = {k.casefold() for k in re.findall(_DETAILS_CLAUSE, opath, re.I)}
        return [m for m in org.mailboxes if m.kind.casefold() in kinds]
    raise CmdletError(
        _exchange_error(
            call,
            (
                f'The lab cannot evaluate the filter "{opath}": it answers a '
                "management scope's own RecipientFilter and RecipientTypeDetails "
                "-eq '...' comparisons (joined with -or) only."
            ),
            "InvalidOperationException",
            opath,
            ErrorCategory.InvalidArgument,
        )
    )


def _by_kind(
    call: _Invocation, mailboxes: Iterable[LabMailbox]
) -> Iterator[LabMailbox]:
    kinds = {k.casefold() for k in call.texts("RecipientTypeDetails")}
    for mailbox in mailboxes:
        if not kinds or mailbox.kind.casefold() in kinds:
            yield mailbox


def _email_addresses(mailbox: LabMailbox) -> Multi:
    items = [f"SMTP:{mailbox.primary}"] + [f"smtp:{a}" for a in mailbox.aliases]
    return _strings(
        items,
        (
            "Microsoft.Exchange.Data.ProxyAddressCollection",
            "Microsoft.Exchange.Data.ProxyAddressBaseCollection`1[[Microsoft.Exchange."
            "Data.ProxyAddress, Microsoft.Exchange.Data, Version=15.0.0.0, "
            "Culture=neutral, PublicKeyToken=31bf3856ad364e35]]",
            *_MULTI_BASE,
        ),
    )


def _recipient_details(mailbox: LabMailbox) -> EnumValue:
    return _enum(
        f"{_RECIPIENT}.RecipientTypeDetails",
        mailbox.kind,
        _RECIPIENT_TYPE_DETAILS.get(mailbox.kind, 1),
        wide=True,
    )


def _mailbox_id(org: ShellOrganisation, mailbox: LabMailbox) -> LabObject:
    name = org.display_name(mailbox)
    return org.ad_id(
        org.ou_path(mailbox), name, org.user_dn(name), f"{org.ad_domain}/Users"
    )


def _recipient_props(org: ShellOrganisation, mailbox: LabMailbox) -> dict[str, Any]:
    identity = _mailbox_id(org, mailbox)
    name = org.display_name(mailbox)
    return {
        "Name": name,
        "Alias": mailbox.alias,
        "DisplayName": name,
        "PrimarySmtpAddress": mailbox.primary,
        "EmailAddresses": _email_addresses(mailbox),
        "RecipientType": _enum(f"{_RECIPIENT}.RecipientType", "UserMailbox", 2),
        "RecipientTypeDetails": _recipient_details(mailbox),
        "CustomAttribute15": (
            "CalendarService" if mailbox.in_impersonation_scope else ""
        ),
        "OrganizationalUnit": f"{org.ad_domain}/Users",
        "DistinguishedName": org.user_dn(name),
        "Identity": identity,
        "Guid": org.guid("mailbox", mailbox.primary),
        "Id": identity,
        "IsValid": True,
    }


def _get_recipient(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    opath = call.text("RecipientPreviewFilter") or call.text("Filter")
    identity = call.text("Identity")
    if opath is not None:
        mailboxes: Iterable[LabMailbox] = _filtered_mailboxes(org, call, opath)
    elif identity is not None:
        found = org.find_mailbox(identity)
        if found is None:
            call.not_found(identity, org.dc_fqdn)
        mailboxes = [found] if found else []
    else:
        mailboxes = org.mailboxes
    type_names = (
        "Microsoft.Exchange.Data.Directory.Management.ReducedRecipient",
        *_PRESENTATION,
        *_AD_OBJECT,
    )
    for mailbox in _limit(call, _by_kind(call, mailboxes)):
        props = _recipient_props(org, mailbox)
        yield call.output(LabObject(type_names, props["Name"], props))


def _get_mailbox(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    if call.text("Filter") is not None:
        chosen: Iterable[LabMailbox] = _filtered_mailboxes(
            org, call, call.text("Filter") or ""
        )
    elif stream is not None or call.text("Identity") is not None:
        chosen = _resolved(org, call, stream)
    else:
        chosen = org.mailboxes
    for mailbox in _limit(call, _by_kind(call, chosen)):
        yield call.output(_mailbox(org, mailbox))


def _resolved(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[LabMailbox]:
    for identity, _ in _inputs(call, stream):
        mailbox = org.find_mailbox(identity)
        if mailbox is None:
            call.not_found(identity, org.dc_fqdn)
        else:
            yield mailbox


def _mailbox(org: ShellOrganisation, mailbox: LabMailbox) -> LabObject:
    props = _recipient_props(org, mailbox)
    person = org.person(mailbox.primary)
    server = org.mailbox_server
    database = "DB01"
    created = _created(org, "mailbox", mailbox.primary)
    resource = {"RoomMailbox": "Room", "EquipmentMailbox": "Equipment"}.get(
        mailbox.kind
    )
    props.update(
        {
            "UserPrincipalName": mailbox.primary,
            "SamAccountName": person.sam,
            "ServerName": server.name.lower(),
            "Database": org.ad_id(
                database,
                database,
                org.config_dn(
                    database,
                    "Databases",
                    "Exchange Administrative Group " "(FYDIBOHF23SPDLT)",
                    "Administrative Groups",
                ),
                "Databases",
            ),
            "Languages": _strings(
                (mailbox.language,),
                (
                    "Microsoft.Exchange.Data.MultiValuedProperty`1[[System.Globalization."
                    "CultureInfo, mscorlib, Version=4.0.0.0, Culture=neutral, "
                    "PublicKeyToken=b77a5c561934e089]]",
                    *_MULTI_BASE,
                ),
            ),
            "ExchangeGuid": org.guid("exchange-guid", mailbox.primary),
            "IsMailboxEnabled": True,
            "IsResource": resource is not None,
            "IsShared": mailbox.kind == "SharedMailbox",
            "ResourceType": (
                _enum(
                    f"{_RECIPIENT}.ExchangeResourceType",
                    resource,
                    0 if resource == "Room" else 1,
                )
                if resource
                else None
            ),
            "HiddenFromAddressListsEnabled": False,
            "WhenCreated": created,
            "WhenChanged": created,
        }
    )
    type_names = (
        "Microsoft.Exchange.Data.Directory.Management.Mailbox",
        "Microsoft.Exchange.Data.Directory.Management.MailEnabledOrgPerson",
        "Microsoft.Exchange.Data.Directory.Management.MailEnabledRecipient",
        *_PRESENTATION,
        *_AD_OBJECT,
    )
    return LabObject(type_names, props["Name"], props)


# Mailbox folders -----------------------------------------------------------------

_HOLIDAYS = "Holidays"


def _folder_stats(
    org: ShellOrganisation, mailbox: LabMailbox, path: str, folder_type: str
) -> LabObject:
    name = path.rpartition("\\")[2]
    digest = hashlib.sha256(f"{mailbox.primary}/{path}".encode()).digest()
    items = digest[0] % 120 + (5 if folder_type == "Calendar" else 0)
    size = items * 3211 + digest[1] * 17
    identity = f"{mailbox.primary}\\{path}"
    created = _created(org, "folder", mailbox.primary, path)
    props: dict[str, Any] = {
        "Date": created,
        "CreationTime": created,
        "LastModifiedTime": created + datetime.timedelta(days=digest[2]),
        "Name": name,
        "FolderPath": "/" + path.replace("\\", "/"),
        "FolderId": "LgAAAA" + digest[:24].hex().upper(),
        "FolderType": folder_type,
        "ContainerClass": "IPF.Appointment",
        "ItemsInFolder": items,
        "DeletedItemsInFolder": 0,
        "FolderSize": f"{size / 1024:.1f} KB ({size:,} bytes)",
        "ItemsInFolderAndSubfolders": items,
        "FolderAndSubfolderSize": f"{size / 1024:.1f} KB ({size:,} bytes)",
        "Identity": identity,
        "IsValid": True,
    }
    type_names = (
        "Microsoft.Exchange.Management.Tasks.MailboxFolderConfiguration",
        "Microsoft.Exchange.Data.ConfigurableObject",
        "System.Object",
    )
    return LabObject(type_names, identity, props)


def _calendar_folders(
    org: ShellOrganisation, mailbox: LabMailbox
) -> Iterator[LabObject]:
    calendar = mailbox.calendar_name
    yield _folder_stats(org, mailbox, calendar, "Calendar")
    yield _folder_stats(org, mailbox, f"{calendar}\\{_HOLIDAYS}", "User Created")


def _get_mailbox_folder_statistics(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    scope = call.text("FolderScope") or "All"
    if scope.casefold() not in ("calendar", "all"):
        raise CmdletError(
            _exchange_error(
                call,
                f"The lab answers -FolderScope Calendar (or All) only, not '{scope}'.",
                "ArgumentException",
                scope,
                ErrorCategory.InvalidArgument,
            )
        )
    for mailbox in _resolved(org, call, stream):
        if mailbox.folder_read_error:
            call.sink.error(
                _exchange_error(
                    call,
                    mailbox.folder_read_error,
                    "MailboxUnavailableException",
                    org.ou_path(mailbox),
                    ErrorCategory.ReadError,
                )
            )
            continue
        yield from (call.output(f) for f in _calendar_folders(org, mailbox))


def _split_folder_identity(identity: str) -> tuple[str, str]:
    """("mailbox", "folder path") from "mailbox:\\folder" or a stats "mailbox\\path"."""
    if ":\\" in identity:
        owner, _, path = identity.partition(":\\")
    else:
        owner, _, path = identity.partition("\\")
    return owner.strip(), path.strip().strip("\\")


def _permission(
    org: ShellOrganisation,
    mailbox: LabMailbox,
    folder: str,
    display: str,
    user_type: str,
    right: str,
) -> LabObject:
    identity = f"{mailbox.primary}:\\{folder}"
    user = LabObject(
        (
            "Microsoft.Exchange.Management.StoreTasks.MailboxFolderUserId",
            "System.Object",
        ),
        display,
        {
            "DisplayName": display,
            "UserType": _enum(
                "Microsoft.Exchange.Management.StoreTasks.MailboxFolderUserId+UserIdType",
                user_type,
                {"Default": 0, "Anonymous": 1, "Internal": 2}[user_type],
            ),
        },
    )
    props: dict[str, Any] = {
        "FolderName": folder.rpartition("\\")[2] or "Top of Information Store",
        "User": user,
        "AccessRights": _strings(
            (right,),
            (
                "System.Collections.ObjectModel.Collection`1[[Microsoft.Exchange."
                "Management.StoreTasks.MailboxFolderAccessRight, Microsoft.Exchange."
                "Management, Version=15.0.0.0, Culture=neutral, "
                "PublicKeyToken=31bf3856ad364e35]]",
                "System.Object",
            ),
        ),
        "SharingPermissionFlags": None,
        "Identity": identity,
        "IsValid": True,
    }
    type_names = (
        "Microsoft.Exchange.Management.StoreTasks.MailboxFolderPermission",
        "Microsoft.Exchange.Data.Storage.Management.XsoMailboxConfigurationObject",
        "Microsoft.Exchange.Data.ConfigurableObject",
        "System.Object",
    )
    return LabObject(type_names, identity, props)


def _folder_permissions(
    org: ShellOrganisation, mailbox: LabMailbox, folder: str
) -> list[LabObject] | None:
    """The permission entries of a folder; None when the folder does not exist."""
    calendar = mailbox.calendar_name
    holidays = f"{calendar}\\{_HOLIDAYS}"
    folded = folder.casefold()
    if folded == "":
        rows = [
            _permission(org, mailbox, "", "Default", "Default", "None"),
            _permission(org, mailbox, "", "Anonymous", "Anonymous", "None"),
        ]
        return rows
    if folded not in (calendar.casefold(), holidays.casefold()):
        return None
    path = calendar if folded == calendar.casefold() else holidays
    rows = [
        _permission(org, mailbox, path, "Default", "Default", "AvailabilityOnly"),
        _permission(org, mailbox, path, "Anonymous", "Anonymous", "None"),
    ]
    service = org.service
    own = mailbox.primary.casefold() == service.upn.casefold()
    if path == calendar and mailbox.delegate_right != "None" and not own:
        rows.append(
            _permission(
                org, mailbox, path, service.display, "Internal", mailbox.delegate_right
            )
        )
    return rows


def _get_mailbox_folder_permission(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    user = call.text("User")
    for identity, _ in _inputs(call, stream):
        owner, folder = _split_folder_identity(identity)
        mailbox = org.find_mailbox(owner)
        rows = None if mailbox is None else _folder_permissions(org, mailbox, folder)
        shown = identity if ":\\" in identity else f"{owner}:\\{folder}"
        if rows is None:
            call.not_found(shown)
            continue
        if mailbox is not None and mailbox.folder_permission_error:
            call.sink.error(
                _exchange_error(
                    call,
                    mailbox.folder_permission_error,
                    "StoragePermanentException",
                    shown,
                    ErrorCategory.ReadError,
                )
            )
            continue
        if user is not None:
            rows = [r for r in rows if _permission_user_matches(org, r, user)]
            if not rows:
                call.sink.error(
                    _exchange_error(
                        call,
                        f"There is no existing permission entry found for user: {user}.",
                        "UserNotFoundInPermissionEntryException",
                        shown,
                        ErrorCategory.NotSpecified,
                    )
                )
                continue
        for row in rows:
            yield call.output(row)


def _permission_user_matches(
    org: ShellOrganisation, row: LabObject, wanted: str
) -> bool:
    display = text_of(row.props["User"])
    if _matches(wanted, display):
        return True
    service = org.service
    return display == service.display and _person_matches(org, service, wanted)


# Send As ---------------------------------------------------------------------

_AD_RIGHTS = {
    "ReadProperty": 16,
    "WriteProperty": 32,
    "ExtendedRight": 256,
    "ReadControl": 131072,
    "GenericRead": 131220,
    "GenericAll": 983551,
}
_INHERITANCE = {"None": 0, "All": 1, "Descendents": 2, "SelfAndChildren": 3}


def _ace(
    org: ShellOrganisation,
    mailbox: LabMailbox,
    user: str,
    rights: Sequence[str],
    extended: Sequence[str],
    *,
    deny: bool = False,
    inherited: bool = False,
) -> LabObject:
    identity = _mailbox_id(org, mailbox)
    rights_type = "System.DirectoryServices.ActiveDirectoryRights"
    props: dict[str, Any] = {
        "AccessRights": Multi(
            (f"{rights_type}[]", "System.Array", "System.Object"),
            tuple(_enum(rights_type, r, _AD_RIGHTS[r]) for r in rights),
        ),
        "ExtendedRights": (
            _strings(
                extended,
                (
                    "Microsoft.Exchange.Management.RecipientTasks."
                    "ExtendedRightIdParameter[]",
                    "System.Array",
                    "System.Object",
                ),
            )
            if extended
            else None
        ),
        "ChildObjectTypes": None,
        "InheritedObjectType": None,
        "Properties": None,
        "Deny": deny,
        "InheritanceType": _enum(
            "System.DirectoryServices.ActiveDirectorySecurityInheritance",
            "All" if inherited else "None",
            _INHERITANCE["All" if inherited else "None"],
        ),
        "User": LabObject(
            (
                "Microsoft.Exchange.Management.RecipientTasks.SecurityPrincipalIdParameter",
                "System.Object",
            ),
            user,
            {"RawIdentity": user},
        ),
        "Identity": identity,
        "IsInherited": inherited,
        "IsValid": True,
    }
    type_names = (
        "Microsoft.Exchange.Management.RecipientTasks.ADAcePresentationObject",
        "Microsoft.Exchange.Management.RecipientTasks.AcePresentationObject",
        "Microsoft.Exchange.Data.ConfigurableObject",
        "System.Object",
    )
    return LabObject(type_names, text_of(identity), props)


def _aces(org: ShellOrganisation, mailbox: LabMailbox) -> list[LabObject]:
    netbios = org.netbios
    rows = [
        _ace(
            org,
            mailbox,
            "NT AUTHORITY\\SELF",
            ["ExtendedRight"],
            ["Send-As", "Receive-As"],
            inherited=True,
        ),
        _ace(org, mailbox, "NT AUTHORITY\\SYSTEM", ["GenericAll"], []),
        _ace(
            org,
            mailbox,
            f"{netbios}\\Exchange Servers",
            ["ReadProperty", "WriteProperty"],
            [],
            inherited=True,
        ),
        _ace(
            org,
            mailbox,
            f"{netbios}\\Domain Admins",
            ["ExtendedRight"],
            ["Receive-As"],
            deny=True,
            inherited=True,
        ),
    ]
    service = org.service
    if mailbox.primary.casefold() != service.upn.casefold():
        account = f"{netbios}\\{service.sam}"
        if mailbox.send_as:
            rows.append(_ace(org, mailbox, account, ["ExtendedRight"], ["Send-As"]))
        if mailbox.send_as_deny:
            rows.append(
                _ace(org, mailbox, account, ["ExtendedRight"], ["Send-As"], deny=True)
            )
    return rows


def _ace_user_matches(org: ShellOrganisation, row: LabObject, wanted: str) -> bool:
    user = text_of(row.props["User"])
    if _matches(wanted, user):
        return True
    domain, _, account = user.partition("\\")
    if domain.casefold() == org.netbios.casefold():
        if _matches(wanted, account):
            return True
        service = org.service
        if account.casefold() == service.sam.casefold():
            return _person_matches(org, service, wanted)
    return False


def _get_ad_permission(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    user = call.text("User")
    for mailbox in _resolved(org, call, stream):
        if mailbox.ad_permission_error:
            call.sink.error(
                _exchange_error(
                    call,
                    mailbox.ad_permission_error,
                    "ADOperationException",
                    org.ou_path(mailbox),
                    ErrorCategory.ReadError,
                )
            )
            continue
        for row in _aces(org, mailbox):
            if user is None or _ace_user_matches(org, row, user):
                yield call.output(row)


# Active Directory (the domain controller endpoint) -----------------------------------

_AD_USER_DEFAULT = (
    "DistinguishedName",
    "Enabled",
    "GivenName",
    "Name",
    "ObjectClass",
    "ObjectGUID",
    "SamAccountName",
    "SID",
    "Surname",
    "UserPrincipalName",
)
_AD_USER_EXTRA = (
    "LockedOut",
    "PasswordExpired",
    "PasswordNeverExpires",
    "PasswordLastSet",
    "msDS-UserPasswordExpiryTimeComputed",
    "AccountExpirationDate",
)


def filetime(moment: datetime.datetime) -> int:
    """A Windows FILETIME: 100-nanosecond intervals since 1601-01-01 UTC."""
    delta = moment - _FILETIME_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# The one -Filter form the lab answers: the service account by its UPN.
_UPN_FILTER = re.compile(
    r"^\s*UserPrincipalName\s+-eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE
)


def _get_ad_user(
    org: ShellOrganisation, call: _Invocation, stream: Iterator[Any] | None
) -> Iterator[Any]:
    wanted = [p.casefold() for p in call.texts("Properties")]
    service = org.service
    dn = org.user_dn(service.sam)
    ad_filter = call.text("Filter")
    if ad_filter is not None or call.text("LDAPFilter") is not None:
        match = _UPN_FILTER.match(ad_filter or "")
        if match is None:
            raise CmdletError(
                LabError(
                    message="The lab's Get-ADUser answers -Identity, or -Filter "
                    "\"UserPrincipalName -eq '...'\" only.",
                    exception=("System.ArgumentException", "System.SystemException"),
                    reason="ArgumentException",
                    error_id="ActiveDirectoryCmdlet:System.ArgumentException,"
                    "Microsoft.ActiveDirectory.Management.Commands.GetADUser",
                    category=ErrorCategory.InvalidArgument,
                    activity=call.name,
                )
            )
        # A filter that matches nobody answers nothing, without an error.
        if match.group(1).replace("''", "'").casefold() == service.upn.casefold():
            yield call.output(_ad_user(org, dn, wanted))
        return
    if stream is None and call.text("Identity") is None:
        raise CmdletError(_missing_parameter(call.name, "Identity"))
    for identity, _ in _inputs(call, stream):
        if not _matches(
            identity, service.upn, service.sam, f"{org.netbios}\\{service.sam}", dn
        ):
            raise CmdletError(
                LabError(
                    message=(
                        f"Cannot find an object with identity: '{identity}' under: "
                        f"'{org.domain_dn}'."
                    ),
                    exception=(
                        "Microsoft.ActiveDirectory.Management.ADIdentityNotFoundException",
                        "Microsoft.ActiveDirectory.Management.ADException",
                        "System.InvalidOperationException",
                        "System.SystemException",
                    ),
                    reason="ADIdentityNotFoundException",
                    error_id=(
                        "ActiveDirectoryCmdlet:Microsoft.ActiveDirectory.Management."
                        "ADIdentityNotFoundException,Microsoft.ActiveDirectory."
                        "Management.Commands.GetADUser"
                    ),
                    category=ErrorCategory.ObjectNotFound,
                    target=identity,
                    activity=call.name,
                )
            )
        yield call.output(_ad_user(org, dn, wanted))


def _ad_user(org: ShellOrganisation, dn: str, wanted: list[str]) -> LabObject:
    account = org.scenario.account
    service = org.service
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    if account.password_never_expires:
        expiry = NEVER_EXPIRES
    else:
        expiry = filetime(
            now + datetime.timedelta(days=account.password_expires_in_days)
        )
    sid_tail = int(org.guid("sid", service.upn).hex[:4], 16) % 8000 + 1100
    values: dict[str, Any] = {
        "DistinguishedName": dn,
        "Enabled": account.enabled,
        "GivenName": None,
        "Name": service.sam,
        "ObjectClass": "user",
        "ObjectGUID": org.guid("user", service.upn),
        "SamAccountName": service.sam,
        "SID": f"S-1-5-21-3623811015-3361044348-30300820-{sid_tail}",
        "Surname": None,
        "UserPrincipalName": service.upn,
        "LockedOut": account.locked,
        "PasswordExpired": (
            not account.password_never_expires and account.password_expires_in_days < 0
        ),
        "PasswordNeverExpires": account.password_never_expires,
        "PasswordLastSet": now
        - datetime.timedelta(days=account.password_last_set_days_ago),
        "msDS-UserPasswordExpiryTimeComputed": PSInt64(expiry),
        "AccountExpirationDate": (
            None
            if account.account_expires_in_days is None
            else now + datetime.timedelta(days=account.account_expires_in_days)
        ),
    }
    everything = "*" in wanted
    props = {n: values[n] for n in _AD_USER_DEFAULT}
    for name in _AD_USER_EXTRA:
        if everything or name.casefold() in wanted:
            props[name] = values[name]
    type_names = (
        "Microsoft.ActiveDirectory.Management.ADUser",
        "Microsoft.ActiveDirectory.Management.ADAccount",
        "Microsoft.ActiveDirectory.Management.ADPrincipal",
        "Microsoft.ActiveDirectory.Management.ADObject",
        "Microsoft.ActiveDirectory.Management.ADEntity",
        "Microsoft.ActiveDirectory.Management.ADPropertyCollection",
        "System.Object",
    )
    return LabObject(type_names, dn, props)


# The command tables ------------------------------------------------------------

_DC = "DomainController"
_TASKS = "Microsoft.Exchange.Management"

EXCHANGE_CMDLETS: dict[str, _Spec] = {
    spec.name.casefold(): spec
    for spec in (
        _Spec(
            "Get-ExchangeServer",
            _get_exchange_server,
            ("Identity", _DC, "Status"),
            f"{_TASKS}.SystemConfigurationTasks.GetExchangeServer",
        ),
        _Spec(
            "Get-WebServicesVirtualDirectory",
            _get_web_services_virtual_directory,
            (
                "Identity",
                "Server",
                "ADPropertiesOnly",
                "ShowMailboxVirtualDirectories",
                _DC,
            ),
            f"{_TASKS}.SystemConfigurationTasks.GetWebServicesVirtualDirectory",
        ),
        _Spec(
            "Get-ExchangeCertificate",
            _get_exchange_certificate,
            ("Thumbprint", "Identity", "Server", _DC),
            f"{_TASKS}.SystemConfigurationTasks.GetExchangeCertificate",
        ),
        _Spec(
            "Get-ManagementRoleAssignment",
            _get_management_role_assignment,
            (
                "Identity",
                "Role",
                "RoleAssignee",
                "RoleAssigneeType",
                "GetEffectiveUsers",
                "Delegating",
                "Enabled",
                _DC,
            ),
            f"{_TASKS}.RbacTasks.GetManagementRoleAssignment",
        ),
        _Spec(
            "Get-ManagementScope",
            _get_management_scope,
            ("Identity", "Exclusive", _DC),
            f"{_TASKS}.RbacTasks.GetManagementScope",
        ),
        _Spec(
            "Get-Recipient",
            _get_recipient,
            (
                "Identity",
                "RecipientPreviewFilter",
                "Filter",
                "ResultSize",
                "RecipientTypeDetails",
                _DC,
            ),
            f"{_TASKS}.RecipientTasks.GetRecipient",
        ),
        _Spec(
            "Get-Mailbox",
            _get_mailbox,
            ("Identity", "ResultSize", "RecipientTypeDetails", "Filter", _DC),
            f"{_TASKS}.RecipientTasks.GetMailbox",
            pipeline_input=True,
        ),
        _Spec(
            "Get-MailboxFolderStatistics",
            _get_mailbox_folder_statistics,
            ("Identity", "FolderScope", "IncludeOldestAndNewestItems", _DC),
            f"{_TASKS}.Tasks.GetMailboxFolderStatistics",
            pipeline_input=True,
        ),
        _Spec(
            "Get-MailboxFolderPermission",
            _get_mailbox_folder_permission,
            ("Identity", "User", _DC),
            f"{_TASKS}.StoreTasks.GetMailboxFolderPermission",
            pipeline_input=True,
        ),
        _Spec(
            "Get-ADPermission",
            _get_ad_permission,
            ("Identity", "User", "Owner", _DC),
            f"{_TASKS}.RecipientTasks.GetADPermission",
            pipeline_input=True,
        ),
    )
}

DC_CMDLETS: dict[str, _Spec] = {
    "get-aduser": _Spec(
        "Get-ADUser",
        _get_ad_user,
        ("Identity", "Properties", "Server", "Filter", "LDAPFilter", "SearchBase"),
        "Microsoft.ActiveDirectory.Management.Commands.GetADUser",
        pipeline_input=True,
    )
}

# Parameters a command cannot run without when nothing is piped into it.
MANDATORY: dict[str, tuple[str, ...]] = {
    "Get-MailboxFolderStatistics": ("Identity",),
    "Get-MailboxFolderPermission": ("Identity",),
    "Get-ADPermission": ("Identity",),
}


def is_read_only(name: str) -> bool:
    """Whether a command name is one the lab's read-only shell could ever run."""
    return name.casefold().startswith(("get-", "test-"))
