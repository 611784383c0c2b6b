"""Scenario files: what the simulated organisation looks like and what is wrong with it.

A scenario is a TOML file in lab/scenarios/. It describes the organisation (EWS host,
offered authentication, server build, certificate variant, DNS records, mailboxes),
what the audit is told (URL path, access mode, invited addresses) and which checks
are expected to fail, warn or be blocked, so the fault matrix is data too.
"""

from __future__ import annotations

import re
import tomllib
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

SCENARIO_DIR = Path(__file__).parent / "scenarios"

CERTIFICATE_VARIANTS = (
    "good",
    "expiring_soon",
    "self_signed",
    "expired",
    "wrong_name",
    "missing_intermediate",
    "rsa1024",
    "sha1",
    "internal_ca",
)
ACCESS_MODES = ("impersonation", "delegate")
CALENDAR_RIGHTS = (
    "None",
    "AvailabilityOnly",
    "LimitedDetails",
    "Reviewer",
    "Contributor",
    "NonEditingAuthor",
    "Author",
    "PublishingAuthor",
    "Editor",
    "PublishingEditor",
    "Owner",
)
MAILBOX_KINDS = ("UserMailbox", "RoomMailbox", "SharedMailbox", "EquipmentMailbox")
# What a hostile or broken EWS front end does to signed-in EWS requests (lab/ews.py).
HOSTILE_BEHAVIOURS = (
    "",  # nothing: EWS answers normally
    "black_hole",  # finishes TLS, reads the request, never answers
    "slow_drip",  # sends the answer one byte a second
    "reset_mid_body",  # sends the headers and half the body, then a TCP reset
    "html_page",  # an IIS/ASP.NET error page (HTTP 500, text/html) instead of SOAP
    "empty_body",  # HTTP 200, text/xml, no body
    "invalid_xml",  # HTTP 200, text/xml, a SOAP answer cut off mid-element
    "huge_body",  # HTTP 200, text/xml, hostile_body_mb of padding inside the envelope
    "entity_expansion",  # a SOAP answer whose DTD nests entities ("billion laughs")
    "external_entity",  # a SOAP answer whose DTD names files and URLs as entities
    "http_503",  # HTTP 503 Service Unavailable with Retry-After
)
TRANSPORT_HOSTILITY = ("black_hole", "slow_drip", "reset_mid_body")
RECORD_TYPES = ("A", "AAAA", "CNAME", "SRV", "NXDOMAIN")


class ScenarioError(ValueError):
    """A scenario file names an unknown key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class LabMailbox:
    primary: str
    aliases: tuple[str, ...] = ()
    kind: str = "UserMailbox"
    display_name: str = ""
    calendar_name: str = "Calendar"
    language: str = "en-US"
    # The service account's AccessRights on this mailbox's calendar folder.
    delegate_right: str = "Editor"
    send_as: bool = True
    # An explicit Deny on Send As for the service account (Deny wins over Allow).
    send_as_deny: bool = False
    in_impersonation_scope: bool = True
    # Non-terminating errors the shell writes for this mailbox, with this message
    # (empty: none): reading its folders (Get-MailboxFolderStatistics), reading its
    # calendar's permissions (Get-MailboxFolderPermission), reading its AD
    # permissions (Get-ADPermission). The pipeline goes on with the other mailboxes.
    folder_read_error: str = ""
    folder_permission_error: str = ""
    ad_permission_error: str = ""

    def addresses(self) -> tuple[str, ...]:
        return (self.primary, *self.aliases)

    @property
    def alias(self) -> str:
        return self.primary.partition("@")[0]


@dataclass(frozen=True)
class LabServer:
    """An Exchange server as Get-ExchangeServer and its virtual directories show it.

    Empty strings take defaults from the scenario: version from server_version, the
    IIS certificate from certificate, the EWS ExternalUrl from ews_host; "none" leaves
    ExternalUrl unset (Nil), as on a server nobody published.
    """

    name: str = "EX01"
    domain: str = "contoso.local"
    version: str = ""
    roles: tuple[str, ...] = ("Mailbox",)
    edition: str = "Standard"
    ews_basic: bool = True
    ews_windows: bool = True
    ews_internal_url: str = ""
    ews_external_url: str = ""
    iis_certificate: str = ""
    # Further certificates in the server's store, by variant (Exchange's own self-signed
    # certificate for SMTP and the Auth certificate are on every real server).
    other_certificates: tuple[str, ...] = ("self_signed",)

    @property
    def fqdn(self) -> str:
        return f"{self.name.lower()}.{self.domain}"


@dataclass(frozen=True)
class LabRoleAssignment:
    name: str
    role: str = "ApplicationImpersonation"
    assignee: str = ""  # a user's UPN or a group's name
    assignee_type: str = "User"  # User, SecurityGroup or RoleGroup
    scope: str = ""  # CustomRecipientWriteScope; "" means Organization
    enabled: bool = True


@dataclass(frozen=True)
class LabScope:
    """A management scope. Its members are the mailboxes marked in_impersonation_scope:
    the lab does not evaluate OPATH, it answers Get-Recipient for this filter with them.
    """

    name: str
    filter: str


@dataclass(frozen=True)
class LabGroup:
    name: str
    members: tuple[str, ...] = ()
    kind: str = "SecurityGroup"  # or RoleGroup


@dataclass(frozen=True)
class LabAccount:
    """The service account as Active Directory shows it."""

    enabled: bool = True
    locked: bool = False
    password_never_expires: bool = False
    password_last_set_days_ago: float = 10.0
    # Days until the password expires; negative when it already has.
    password_expires_in_days: float = 80.0
    # Days until the account itself expires (AccountExpirationDate); None: never.
    account_expires_in_days: float | None = None


WINRM_FAULT_KINDS = ("wsman", "psrp", "doctype")


@dataclass(frozen=True)
class LabWinrm:
    """Faults of the PowerShell remoting endpoint, by the cmdlet a pipeline runs
    (matched by name, case-insensitively; empty: no fault).

    fault_in: after `fault_after` of its objects were sent, the pipeline breaks: with
    "wsman", the next Receive is answered with a WSMan fault; with "psrp", the
    pipeline ends Failed with a terminating error record; with "doctype", the next
    Receive is answered with an entity bomb (a DTD of nested entities).
    hold_in: every Receive for the pipeline is held, never answered, until the lab
    stops (or the client closes the shell).
    """

    fault_in: str = ""
    fault_after: int = 1
    fault_kind: str = "wsman"
    hold_in: str = ""


@dataclass(frozen=True)
class DnsRecord:
    name: str
    type: str
    value: str = ""
    ttl: int = 300


@dataclass(frozen=True)
class AuditPlan:
    """What the audit is told about the organisation, as an admin would fill it in."""

    url_path: str = "/EWS/Exchange.asmx"
    access: str = "impersonation"
    invited: tuple[str, ...] = ()
    # The tenant file's shell.timeout: how long a PowerShell pipeline may go without
    # an answer (None: the audit's default).
    shell_timeout: float | None = None
    # network.* settings for the run; hostile scenarios shorten them to stay fast.
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    busy_budget: float = 30.0


@dataclass(frozen=True)
class Expectation:
    """Markers whose worst outcome is failed / warned / blocked; all others pass."""

    failed: tuple[str, ...] = ()
    warned: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    organisation: str = "contoso"
    ews_host: str = "mail.contoso.example"
    auth_schemes: tuple[str, ...] = ("Negotiate", "NTLM", "Basic")
    server_version: str = "15.2.1544.4"
    schema_version: str = "V2017_07_11"
    certificate: str = "good"
    impersonation_enabled: bool = True
    busy_first_calls: int = 0
    busy_back_off_ms: int = 2000
    # One of HOSTILE_BEHAVIOURS for signed-in EWS requests (POST /EWS/Exchange.asmx):
    # the first hostile_after are answered normally, then hostile_requests of them get
    # the behaviour (0: every one from then on). Other paths are never affected.
    hostile: str = ""
    hostile_after: int = 0
    hostile_requests: int = 0
    hostile_body_mb: int = 50
    # Also spoil the EWS URL's answers to requests without credentials (what the
    # ews_url and basic_auth checks ask); transport behaviours only.
    hostile_anonymous: bool = False
    # external_entity: besides file:///etc/passwd, an entity and an external DTD with
    # this URL (tests point it at a listener that must never be called).
    hostile_entity_url: str = ""
    service_upn: str = "svc-calendar@contoso.example"
    reject_password: bool = False
    dns_records: tuple[DnsRecord, ...] = ()
    mailboxes: tuple[LabMailbox, ...] = ()
    # This many extra user mailboxes (user00000@<domain of service_upn>...), all invited.
    generated_users: int = 0
    # Exchange's own configuration, as the shell shows it (issue: inside view).
    servers: tuple[LabServer, ...] = (LabServer(),)
    role_assignments: tuple[LabRoleAssignment, ...] | None = None  # None: derived
    scopes: tuple[LabScope, ...] | None = None  # None: derived
    groups: tuple[LabGroup, ...] = ()
    account: LabAccount = field(default_factory=LabAccount)
    winrm: LabWinrm = field(default_factory=LabWinrm)

    def effective_assignments(self) -> tuple[LabRoleAssignment, ...]:
        """The scenario's assignments, or the usual one when it names none: the service
        account's ApplicationImpersonation over the CalendarServiceMailboxes scope,
        present when impersonation_enabled."""
        if self.role_assignments is not None:
            return self.role_assignments
        if not self.impersonation_enabled:
            return ()
        return (
            LabRoleAssignment(
                name="CalendarServiceImpersonation",
                assignee=self.service_upn,
                scope="CalendarServiceMailboxes",
            ),
        )

    def effective_scopes(self) -> tuple[LabScope, ...]:
        if self.scopes is not None:
            return self.scopes
        return (
            LabScope(
                name="CalendarServiceMailboxes",
                filter="CustomAttribute15 -eq 'CalendarService'",
            ),
        )

    audit: AuditPlan = field(default_factory=AuditPlan)
    expect: Expectation = field(default_factory=Expectation)

    def mailbox_for(self, address: str) -> LabMailbox | None:
        """The mailbox owning an address (primary or alias), case-insensitively."""
        wanted = address.casefold()
        for mailbox in self.mailboxes:
            if any(a.casefold() == wanted for a in mailbox.addresses()):
                return mailbox
        return None

    def with_generated_users(self, count: int, domain: str) -> Scenario:
        """A copy with `count` extra user mailboxes, all invited; for scale tests."""
        extra = tuple(
            LabMailbox(primary=f"user{n:05d}@{domain}", display_name=f"User {n}")
            for n in range(count)
        )
        invited = self.audit.invited + tuple(m.primary for m in extra)
        return replace(
            self,
            mailboxes=self.mailboxes + extra,
            audit=replace(self.audit, invited=invited),
        )


def _build(cls: type, data: dict, where: str) -> object:
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        _check_type(value, hints.get(key), f"{where} {key}")
        values[key] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _check_type(value: object, hint: object, where: str) -> None:
    """Plain fields (text, numbers, flags, lists of text) must hold that kind of value;
    nested tables and optional fields are checked where they are built."""
    simple = {str: "text", bool: "true or false", int: "a whole number"}
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
    elif hint in simple:
        ok = type(value) is hint
        expected = simple[hint]
    elif typing.get_origin(hint) is tuple and typing.get_args(hint)[:1] == (str,):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "a list of text"
    else:
        return
    if not ok:
        raise ScenarioError(f"{where}: {value!r} is not {expected}")


def _check_choice(value: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise ScenarioError(f"{where}: {value!r} is not one of {', '.join(choices)}")


# Characters XML 1.0 cannot carry at all: EWS and CLIXML have no way to send them, so
# a mailbox holding them is not something the lab can serve faithfully.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _check_xml_text(value: object, where: str) -> None:
    if isinstance(value, str) and (found := _NOT_XML.search(value)):
        raise ScenarioError(
            f"{where}: U+{ord(found.group()):04X} cannot travel in XML (EWS or CLIXML)"
        )


def parse_scenario(data: dict, name: str) -> Scenario:
    """Build a Scenario from parsed TOML, rejecting unknown keys and bad choices."""
    data = dict(data)
    where = f"scenario {name}"
    records = tuple(
        _build(DnsRecord, r, f"{where} dns_records")
        for r in data.pop("dns_records", [])
    )
    mailboxes = tuple(
        _build(LabMailbox, m, f"{where} mailboxes") for m in data.pop("mailboxes", [])
    )
    audit = _build(AuditPlan, data.pop("audit", {}), f"{where} [audit]")
    servers = tuple(
        _build(LabServer, x, f"{where} servers") for x in data.pop("servers", [{}])
    )
    assignments = data.pop("role_assignments", None)
    if assignments is not None:
        assignments = tuple(
            _build(LabRoleAssignment, x, f"{where} role_assignments")
            for x in assignments
        )
    scopes = data.pop("scopes", None)
    if scopes is not None:
        scopes = tuple(_build(LabScope, x, f"{where} scopes") for x in scopes)
    groups = tuple(
        _build(LabGroup, x, f"{where} groups") for x in data.pop("groups", [])
    )
    account = _build(LabAccount, data.pop("account", {}), f"{where} [account]")
    winrm = _build(LabWinrm, data.pop("winrm", {}), f"{where} [winrm]")
    expect = _build(Expectation, data.pop("expect", {}), f"{where} [expect]")
    data.setdefault("name", name)
    scenario = _build(Scenario, data, where)
    scenario = replace(
        scenario,
        dns_records=records,
        mailboxes=mailboxes,
        audit=audit,
        expect=expect,
        servers=servers,
        role_assignments=assignments,
        scopes=scopes,
        groups=groups,
        account=account,
        winrm=winrm,
    )

    if scenario.generated_users:
        domain = scenario.service_upn.rpartition("@")[2]
        scenario = replace(
            scenario.with_generated_users(scenario.generated_users, domain),
            generated_users=0,
        )
    _check_choice(scenario.certificate, CERTIFICATE_VARIANTS, f"{where} certificate")
    _check_choice(scenario.audit.access, ACCESS_MODES, f"{where} audit.access")
    _check_choice(
        scenario.winrm.fault_kind, WINRM_FAULT_KINDS, f"{where} winrm.fault_kind"
    )
    _check_choice(scenario.hostile, HOSTILE_BEHAVIOURS, f"{where} hostile")
    if scenario.hostile_anonymous and scenario.hostile not in TRANSPORT_HOSTILITY:
        raise ScenarioError(
            f"{where}: hostile_anonymous needs one of {', '.join(TRANSPORT_HOSTILITY)}"
        )
    for record in records:
        _check_choice(record.type, RECORD_TYPES, f"{where} record {record.name}")
    for mailbox in mailboxes:
        for key, value in vars(mailbox).items():
            for text in value if isinstance(value, tuple) else (value,):
                _check_xml_text(text, f"{where} {mailbox.primary!r} {key}")
        _check_choice(mailbox.kind, MAILBOX_KINDS, f"{where} {mailbox.primary} kind")
        _check_choice(
            mailbox.delegate_right,
            CALENDAR_RIGHTS,
            f"{where} {mailbox.primary} delegate_right",
        )
    return scenario


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _read(name: str, seen: tuple[str, ...] = ()) -> dict:
    """The scenario's TOML with its `extends` chain merged in, base first.

    Tables merge one level deep; lists and [expect] are the child's alone, so a fault
    scenario states exactly what it expects.
    """
    if name in seen:
        raise ScenarioError(f"scenario {name}: 'extends' loops through {name}")
    path = SCENARIO_DIR / f"{name}.toml"
    if not path.is_file():
        raise ScenarioError(
            f"no lab scenario named {name!r}; known: {', '.join(scenario_names())}"
        )
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {name}: not valid TOML ({exc})") from None
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    merged = _read(base_name, (*seen, name))
    merged.pop("expect", None)
    merged.pop("description", None)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_scenario(name: str) -> Scenario:
    """Load lab/scenarios/<name>.toml; an unknown name lists the known ones."""
    data = _read(name)
    data["name"] = name
    return parse_scenario(data, name)
