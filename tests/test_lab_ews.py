"""The lab's EWS front end, driven by the real exchangelib and requests.

Every test starts a Lab on loopback, trusts only its stand-in public root, and reaches
the scenario's EWS host name by connecting to 127.0.0.1 (SNI and Host stay the name).
The request counts asserted here are the ones the audit's probes rely on.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    UTC,
    Account,
    Build,
    Configuration,
    Credentials,
    EWSDateTime,
    FailFast,
    FaultTolerance,
    Version,
)
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorInvalidOperation,
    ErrorNameResolutionNoResults,
    ErrorNonExistentMailbox,
    ErrorNonPrimarySmtpAddress,
    ErrorServerBusy,
    TransportError,
    UnauthorizedError,
)
from exchangelib.folders import Calendar, FolderCollection, Root
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import BaseProtocol, RetryPolicy, close_connections
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.util.connection import create_connection

from lab import Lab, LabRequest, Scenario, load_scenario
from lab.ews_operations import Organisation
from lab.scenario import CERTIFICATE_VARIANTS

PASSWORD = secrets.token_urlsafe(12)  # a canary: it must never reach a log
SERVICE = "svc-calendar@contoso.example"
CONTOSO = load_scenario("contoso")
PINNED = Version(Build(15, 1, 2507, 39))  # contoso's build, as a probe would pin it
MONDAY = EWSDateTime(2024, 5, 6, tzinfo=UTC)
TUESDAY = EWSDateTime(2024, 5, 7, tzinfo=UTC)

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
TYPES_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
ERRORS_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"


class _LoopbackConnection(HTTPSConnection):
    """Connects to 127.0.0.1 whatever the URL's host; SNI and Host keep the name."""

    def _new_conn(self) -> socket.socket:
        return create_connection(("127.0.0.1", self.port), self.timeout)


class _LoopbackPool(HTTPSConnectionPool):
    ConnectionCls = _LoopbackConnection


class _LabAdapter(HTTPAdapter):
    """Loopback connections verified against the lab's public root only."""

    bundle = ""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme,
            "https": _LoopbackPool,
        }

    def send(
        self, request: requests.PreparedRequest, **kwargs: object
    ) -> requests.Response:
        kwargs["verify"] = self.bundle
        return super().send(request, **kwargs)


def adapter_for(lab: Lab) -> type[_LabAdapter]:
    return type("LabAdapter", (_LabAdapter,), {"bundle": str(lab.public_root_bundle)})


@pytest.fixture
def start_lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Lab]]:
    """Start a lab for a scenario (with field changes) and point exchangelib at it."""
    labs: list[Lab] = []

    def start(scenario: Scenario = CONTOSO, **changes: object) -> Lab:
        lab = Lab(dataclasses.replace(scenario, **changes), password=PASSWORD)
        labs.append(lab)
        lab.start()
        monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", adapter_for(lab))
        monkeypatch.setattr(BaseProtocol, "TIMEOUT", 10)
        close_connections()
        return lab

    yield start
    close_connections()
    for lab in labs:
        lab.stop()


def account(
    lab: Lab,
    address: str,
    access: str = IMPERSONATION,
    *,
    auth_type: str | None = BASIC,
    version: Version | None = None,
    password: str = PASSWORD,
    retry: RetryPolicy | None = None,
) -> Account:
    config = Configuration(
        service_endpoint=lab.url,
        credentials=Credentials(SERVICE, password),
        auth_type=auth_type,
        version=version,
        retry_policy=retry or FailFast(),
    )
    return Account(address, access_type=access, config=config, autodiscover=False)


def calendar_of(acc: Account, address: str) -> Calendar:
    """The calendar addressed directly, without asking for the mailbox's root."""
    folder_id = DistinguishedFolderId(
        id=Calendar.DISTINGUISHED_FOLDER_ID, mailbox=Mailbox(email_address=address)
    )
    return Calendar(_distinguished_id=folder_id, root=Root(account=acc))


def operations(lab: Lab) -> list[tuple[str | None, int, str | None]]:
    return [(r.operation, r.status, r.response_code) for r in lab.log]


def session_for(lab: Lab) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter_for(lab)())
    return session


def soap(body: str, impersonate: str | None = None) -> str:
    """A hand-written request, for answers exchangelib reads only partly."""
    header = '<t:RequestServerVersion Version="Exchange2016"/>'
    if impersonate is not None:
        header += (
            "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>"
            f"{escape(impersonate)}"
            "</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP_NS}"'
        ' xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
        f' xmlns:t="{TYPES_NS}"><s:Header>{header}</s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


def get_calendar_folder(address: str) -> str:
    return (
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
        '<m:FolderIds><t:DistinguishedFolderId Id="calendar"><t:Mailbox>'
        f"<t:EmailAddress>{escape(address)}</t:EmailAddress>"
        "</t:Mailbox></t:DistinguishedFolderId></m:FolderIds></m:GetFolder>"
    )


def fault_values(response: requests.Response) -> dict[str, str]:
    root = etree.fromstring(response.content)
    detail = root.find(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault/detail")
    values = {"ResponseCode": detail.findtext(f"{{{ERRORS_NS}}}ResponseCode")}
    for value in detail.iter(f"{{{TYPES_NS}}}Value"):
        values[value.get("Name")] = value.text
    return values


# Impersonation: the cold path and its request count --------------------------------


def test_cold_calendar_view_under_impersonation(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    items = list(
        account(lab, "ana.lopez@contoso.example").calendar.view(MONDAY, TUESDAY)
    )

    assert [i.subject for i in items] == ["Weekly planning", "Customer review"]
    assert all(MONDAY <= i.start < i.end <= TUESDAY for i in items)
    assert operations(lab) == [
        ("ConvertId", 200, "ErrorInvalidIdMalformed"),  # the version guess
        ("GetFolder", 200, "NoError"),  # root
        ("GetFolder", 200, "NoError"),  # calendar
        ("FindItem", 200, "NoError"),
        ("GetItem", 200, "NoError"),
    ]
    assert {r.user for r in lab.log} == {SERVICE}
    assert [r.impersonated for r in lab.log[1:]] == ["ana.lopez@contoso.example"] * 4
    assert lab.log[3].mailboxes == ("ana.lopez@contoso.example",)


def test_exchangelib_learns_the_build_from_the_header(
    start_lab: Callable[..., Lab],
) -> None:
    lab = start_lab()

    version = account(lab, "ana.lopez@contoso.example").version

    assert version.build == Build(15, 1, 2507, 39)
    assert version.api_version == "Exchange2016"


def test_localized_calendar_keeps_its_name(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    assert account(lab, "dieter.braun@contoso.example").calendar.name == "Kalender"


def test_pinned_version_find_item_is_one_request(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()
    acc = account(lab, "chloe.martin@contoso.example", version=PINNED)

    view = calendar_of(acc, acc.primary_smtp_address).view(MONDAY, TUESDAY)
    subjects = [i.subject for i in view.only("subject", "start", "end")]

    assert subjects == ["Weekly planning", "Customer review"]
    assert operations(lab) == [("FindItem", 200, "NoError")]


# Authentication ---------------------------------------------------------------------


def test_auth_guess_picks_basic_from_the_401(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab(auth_schemes=("Negotiate", "Basic"))

    acc = account(lab, "ana.lopez@contoso.example", auth_type=None)
    _ = acc.calendar

    assert acc.protocol.auth_type == BASIC
    first = lab.log[0]
    assert (first.operation, first.status, first.user) == ("ConvertId", 401, None)
    assert [r.status for r in lab.log[1:]] == [200, 200, 200]


def test_401_lists_one_header_per_scheme(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    response = session_for(lab).post(lab.url, data=soap("<m:ConvertId/>"))

    assert response.status_code == 401
    assert response.raw.headers.getlist("WWW-Authenticate") == [
        "Negotiate",
        "NTLM",
        'Basic realm="mail.contoso.example"',
    ]
    assert response.headers["Content-Length"] == str(len(response.content))
    assert "close" not in response.headers.get("Connection", "")


@pytest.mark.parametrize(
    ("changes", "password"),
    [
        ({}, "not-the-password"),
        ({"reject_password": True}, PASSWORD),  # expired or locked out
        ({"auth_schemes": ("Negotiate", "NTLM")}, PASSWORD),  # Basic turned off
    ],
    ids=["wrong-password", "password-rejected", "basic-off"],
)
def test_logon_refused_is_unauthorized(
    start_lab: Callable[..., Lab], changes: dict, password: str
) -> None:
    lab = start_lab(**changes)

    with pytest.raises(UnauthorizedError):
        _ = account(lab, "ana.lopez@contoso.example", password=password).root

    assert [(r.status, r.user) for r in lab.log] == [(401, None)]


def test_auth_guess_prefers_ntlm_which_the_lab_does_not_speak(
    start_lab: Callable[..., Lab],
) -> None:
    # Contoso offers NTLM next to Basic, so exchangelib's guess prefers NTLM; the lab
    # lists NTLM but does not speak it. Probes must ask for Basic explicitly.
    lab = start_lab()

    acc = account(lab, "ana.lopez@contoso.example", auth_type=None)
    with pytest.raises(PermissionError, match="NTLM challenge"):
        _ = acc.root

    assert acc.protocol.auth_type == NTLM
    assert {r.status for r in lab.log} == {401}


def test_domain_backslash_user_name_signs_in(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    response = session_for(lab).get(lab.url, auth=("CONTOSO\\svc-calendar", PASSWORD))

    assert response.status_code == 200
    assert lab.log[-1].user == "CONTOSO\\svc-calendar"


# Impersonation refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "address"),
    [
        ({"impersonation_enabled": False}, "ana.lopez@contoso.example"),
        ({}, "room.harbour@contoso.example"),  # outside the management scope
    ],
    ids=["no-role", "out-of-scope"],
)
def test_impersonation_denied(
    start_lab: Callable[..., Lab], changes: dict, address: str
) -> None:
    lab = start_lab(**changes)

    with pytest.raises(ErrorImpersonateUserDenied):
        _ = account(lab, address, version=PINNED).calendar

    assert operations(lab) == [("GetFolder", 500, "ErrorImpersonateUserDenied")]
    assert lab.log[0].impersonated == address


def test_alias_is_refused_naming_the_primary(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    with pytest.raises(ErrorNonPrimarySmtpAddress):
        _ = account(lab, "alopez@contoso.example", version=PINNED).calendar
    # exchangelib drops the fault's MessageXml, so read the Primary value raw.
    raw = session_for(lab).post(
        lab.url,
        data=soap(
            get_calendar_folder("alopez@contoso.example"), "alopez@contoso.example"
        ),
        auth=(SERVICE, PASSWORD),
    )

    assert raw.status_code == 500
    assert fault_values(raw) == {
        "ResponseCode": "ErrorNonPrimarySmtpAddress",
        "Primary": "ana.lopez@contoso.example",
    }


def test_unknown_mailbox_is_named_in_the_fault(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    with pytest.raises(ErrorNonExistentMailbox):
        _ = account(lab, "nobody@contoso.example", version=PINNED).calendar
    raw = session_for(lab).post(
        lab.url,
        data=soap(
            get_calendar_folder("nobody@contoso.example"), "nobody@contoso.example"
        ),
        auth=(SERVICE, PASSWORD),
    )

    assert fault_values(raw) == {
        "ResponseCode": "ErrorNonExistentMailbox",
        "SmtpAddress": "nobody@contoso.example",
    }


# Delegate access ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("right", "can_read"),
    [
        ("Owner", True),
        ("Editor", True),
        ("Reviewer", True),
        ("Contributor", False),
        ("LimitedDetails", False),
        ("AvailabilityOnly", False),
        ("None", False),
    ],
)
def test_delegate_reads_a_calendar_only_with_reviewer_or_more(
    start_lab: Callable[..., Lab], right: str, can_read: bool
) -> None:
    mailboxes = tuple(
        dataclasses.replace(m, delegate_right=right) for m in CONTOSO.mailboxes
    )
    lab = start_lab(mailboxes=mailboxes)
    acc = account(lab, SERVICE, DELEGATE, version=PINNED)
    calendar = calendar_of(acc, "ana.lopez@contoso.example")

    [folder] = FolderCollection(account=acc, folders=[calendar]).resolve()
    view = calendar.view(MONDAY, TUESDAY).only("subject")

    if can_read:
        assert folder.name == "Calendar"
        assert [i.subject for i in view] == ["Weekly planning", "Customer review"]
    else:
        # GetFolder hands the error back per folder; FindItem raises it.
        assert isinstance(folder, ErrorAccessDenied)
        with pytest.raises(ErrorAccessDenied):
            list(view)
    expected = "NoError" if can_read else "ErrorAccessDenied"
    assert operations(lab) == [
        ("GetFolder", 200, expected),
        ("FindItem", 200, expected),
    ]


def test_calendar_only_delegate_cannot_open_the_root(
    start_lab: Callable[..., Lab],
) -> None:
    # Editor on the calendar is not enough for account.calendar, which asks for the
    # root first: probes must address the calendar folder directly.
    lab = start_lab()

    with pytest.raises(ErrorAccessDenied):
        _ = account(lab, "ana.lopez@contoso.example", DELEGATE, version=PINNED).calendar

    assert operations(lab) == [("GetFolder", 200, "ErrorAccessDenied")]


def test_delegate_get_folder_batches_a_hundred_mailboxes_a_request(
    start_lab: Callable[..., Lab],
) -> None:
    scenario = CONTOSO.with_generated_users(250, "contoso.example")
    lab = start_lab(scenario)
    acc = account(lab, SERVICE, DELEGATE, version=PINNED)
    invited = [m.primary for m in scenario.mailboxes[-250:]]

    folders = [calendar_of(acc, address) for address in invited]
    found = list(FolderCollection(account=acc, folders=folders).resolve())

    assert [f.name for f in found] == ["Calendar"] * 250
    assert operations(lab) == [("GetFolder", 200, "NoError")] * 3
    assert [len(r.mailboxes) for r in lab.log] == [100, 100, 50]
    assert lab.log[0].mailboxes[0] == invited[0]


def test_unknown_mailbox_aborts_a_delegate_batch(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()
    acc = account(lab, SERVICE, DELEGATE, version=PINNED)
    addresses = ["ana.lopez@contoso.example", "nobody@contoso.example"]

    folders = [calendar_of(acc, address) for address in addresses]
    with pytest.raises(ErrorNonExistentMailbox):
        list(FolderCollection(account=acc, folders=folders).resolve())

    assert operations(lab) == [("GetFolder", 500, "ErrorNonExistentMailbox")]
    assert lab.log[0].mailboxes == tuple(addresses)


def test_delegate_may_name_a_mailbox_by_alias(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()
    acc = account(lab, SERVICE, DELEGATE, version=PINNED)

    [folder] = FolderCollection(
        account=acc, folders=[calendar_of(acc, "alopez@contoso.example")]
    ).resolve()

    assert folder.name == "Calendar"


# Other operations -------------------------------------------------------------------


def test_resolve_names_returns_primary_addresses(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()
    protocol = account(lab, SERVICE, DELEGATE, version=PINNED).protocol

    found = protocol.resolve_names(
        ["smtp:alopez@contoso.example", "nobody@contoso.example"]
    )

    assert found[0].email_address == "ana.lopez@contoso.example"
    assert found[0].name == "Ana López"
    assert isinstance(found[1], ErrorNameResolutionNoResults)
    assert lab.log[-1].mailboxes == (
        "smtp:alopez@contoso.example",
        "nobody@contoso.example",
    )


def test_unimplemented_operation_is_invalid_not_a_version_error(
    start_lab: Callable[..., Lab],
) -> None:
    lab = start_lab()
    protocol = account(lab, SERVICE, DELEGATE, version=PINNED).protocol

    with pytest.raises(ErrorInvalidOperation):
        list(protocol.get_roomlists())

    assert operations(lab) == [("GetRoomLists", 200, "ErrorInvalidOperation")]


def test_old_server_makes_exchangelib_walk_down_the_schemas(
    start_lab: Callable[..., Lab],
) -> None:
    lab = start_lab(server_version="14.3.123.4", schema_version="")

    version = account(lab, "ana.lopez@contoso.example").version

    assert version.build == Build(14, 3, 123, 4)
    assert version.api_version == "Exchange2010_SP2"
    assert lab.log[-1].response_code == "ErrorInvalidIdMalformed"
    assert {r.response_code for r in lab.log[:-1]} <= {
        "ErrorInvalidServerVersion",
        "ErrorInvalidRequest",
    }


# Throttling ---------------------------------------------------------------------------


def test_server_busy_back_off_is_honoured(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab(busy_first_calls=2, busy_back_off_ms=200)
    acc = account(
        lab,
        "ana.lopez@contoso.example",
        version=PINNED,
        retry=FaultTolerance(max_wait=10),
    )

    started = time.monotonic()
    list(calendar_of(acc, acc.primary_smtp_address).view(MONDAY, TUESDAY).only("end"))
    elapsed = time.monotonic() - started

    assert elapsed >= 0.4
    assert operations(lab) == [
        ("FindItem", 500, "ErrorServerBusy"),
        ("FindItem", 500, "ErrorServerBusy"),
        ("FindItem", 200, "NoError"),
    ]


def test_server_busy_carries_the_back_off_under_fail_fast(
    start_lab: Callable[..., Lab],
) -> None:
    lab = start_lab(busy_first_calls=1, busy_back_off_ms=200)
    acc = account(lab, "ana.lopez@contoso.example", version=PINNED)

    with pytest.raises(ErrorServerBusy) as raised:
        _ = acc.calendar

    assert raised.value.back_off == pytest.approx(0.2)
    assert len(lab.log) == 1


# Non-EWS paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "authenticated", "status", "content_type"),
    [
        ("GET", "/owa", False, 302, "text/html"),
        ("GET", "/owa/", False, 302, "text/html"),
        ("GET", "/ecp/", False, 302, "text/html"),
        ("GET", "/owa/auth/logon.aspx?url=x&reason=0", False, 200, "text/html"),
        ("GET", "/EWS/Services.wsdl", False, 200, "text/xml"),
        ("GET", "/EWS/Exchange.asmx", False, 401, "text/html"),
        ("GET", "/ews/exchange.asmx", True, 200, "text/html"),
        ("POST", "/autodiscover/autodiscover.xml", False, 401, "text/html"),
        ("GET", "/autodiscover/autodiscover.xml", True, 200, "text/xml"),
        ("GET", "/nothing/here", False, 404, "text/html"),
        ("HEAD", "/nothing/here", False, 404, "text/html"),
    ],
)
def test_paths_answer_like_exchange(
    start_lab: Callable[..., Lab],
    method: str,
    path: str,
    authenticated: bool,
    status: int,
    content_type: str,
) -> None:
    lab = start_lab()
    auth = (SERVICE, PASSWORD) if authenticated else None

    response = session_for(lab).request(
        method, lab.base_url + path, auth=auth, allow_redirects=False
    )

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(content_type)
    assert "Content-Length" in response.headers
    assert (lab.log[-1].method, lab.log[-1].status) == (method, status)


def test_owa_redirects_to_the_logon_form(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()
    session = session_for(lab)

    redirect = session.get(lab.base_url + "/owa/", allow_redirects=False)
    logon = session.get(redirect.headers["Location"], allow_redirects=False)

    assert redirect.status_code == 302
    assert redirect.headers["Location"] == (
        f"{lab.base_url}/owa/auth/logon.aspx?url="
        f"https%3A%2F%2Fmail.contoso.example%3A{lab.ews_port}%2Fowa%2F&reason=0"
    )
    assert logon.status_code == 200
    assert 'type="password"' in logon.text
    assert "mail.contoso.example" in logon.text


def test_autodiscover_points_a_mailbox_at_ews(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()
    request = (
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/'
        'outlook/requestschema/2006"><Request>'
        "<EMailAddress>ana.lopez@contoso.example</EMailAddress>"
        "</Request></Autodiscover>"
    )

    response = session_for(lab).post(
        lab.base_url + "/autodiscover/autodiscover.xml",
        data=request,
        auth=(SERVICE, PASSWORD),
    )

    assert response.status_code == 200
    assert f"<EwsUrl>{lab.base_url}/EWS/Exchange.asmx</EwsUrl>" in response.text


# Robustness ---------------------------------------------------------------------------


def _raw_connection(lab: Lab) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=lab.public_root_bundle)
    sock = socket.create_connection((lab.host, lab.ews_port), timeout=10)
    connection = http.client.HTTPSConnection(lab.scenario.ews_host, context=context)
    connection.sock = context.wrap_socket(sock, server_hostname=lab.scenario.ews_host)
    return connection


def test_a_stalled_handshake_blocks_no_one(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    with socket.create_connection((lab.host, lab.ews_port)):
        response = session_for(lab).get(
            lab.base_url + "/owa/auth/logon.aspx", timeout=5
        )

    assert response.status_code == 200


def test_untrusted_certificate_fails_before_any_request(
    start_lab: Callable[..., Lab],
) -> None:
    lab = start_lab(certificate="self_signed")

    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        _ = account(lab, "ana.lopez@contoso.example", version=PINNED).root

    assert lab.log == []


@pytest.mark.parametrize("variant", CERTIFICATE_VARIANTS)
def test_every_certificate_variant_is_served(
    start_lab: Callable[..., Lab], variant: str
) -> None:
    # Weak variants need OpenSSL security level 0 on both ends; this client checks
    # nothing, it only proves the server loads and presents the certificate.
    lab = start_lab(certificate=variant)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")

    with socket.create_connection((lab.host, lab.ews_port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname=lab.scenario.ews_host) as tls:
            presented = tls.getpeercert(binary_form=True)
            tls.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            status_line = tls.recv(64)

    assert presented
    assert status_line.startswith(b"HTTP/1.1 404 ")


def test_401_drains_the_body_and_keeps_the_connection(
    start_lab: Callable[..., Lab],
) -> None:
    lab = start_lab()
    connection = _raw_connection(lab)
    body = soap("<m:ConvertId/>" + " " * 100_000).encode()

    statuses = []
    for _ in range(2):
        connection.request("POST", "/EWS/Exchange.asmx", body=body)
        response = connection.getresponse()
        response.read()
        statuses.append((response.status, response.getheader("Connection")))
    connection.close()

    assert statuses == [(401, None), (401, None)]


def test_chunked_and_oversized_bodies_are_read_to_the_end(
    start_lab: Callable[..., Lab],
) -> None:
    lab = start_lab()
    session = session_for(lab)
    chunked = (part.encode() for part in (soap("<m:ConvertId/>"), " " * 5000))
    oversized = b" " * (9 * 1024 * 1024)

    statuses = [
        session.post(lab.url, data=chunked).status_code,
        session.post(lab.url, data=oversized).status_code,
        session.get(lab.base_url + "/owa/auth/logon.aspx").status_code,
    ]

    assert statuses == [401, 413, 200]


def test_parallel_clients_are_served_and_logged(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()

    def fetch(_: int) -> list[int]:
        session = session_for(lab)
        url = lab.base_url + "/owa/auth/logon.aspx"
        return [session.get(url, timeout=10).status_code for _ in range(5)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [s for batch in pool.map(fetch, range(8)) for s in batch]

    assert statuses == [200] * 40
    assert len(lab.log) == 40


def test_handler_failure_is_a_soap_fault(
    start_lab: Callable[..., Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = start_lab()

    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Organisation, "answer", explode)
    session = session_for(lab)
    body = soap(get_calendar_folder("ana.lopez@contoso.example"))
    failed = session.post(lab.url, data=body, auth=(SERVICE, PASSWORD))
    again = session.get(lab.base_url + "/owa/auth/logon.aspx")

    assert failed.status_code == 500
    assert fault_values(failed) == {"ResponseCode": "ErrorInternalServerError"}
    assert again.status_code == 200


def test_entity_declarations_are_refused(start_lab: Callable[..., Lab]) -> None:
    lab = start_lab()
    hostile = (
        '<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY x "xxxxxxxx">]>'
        + soap(
            "<m:ResolveNames><m:UnresolvedEntry>&x;</m:UnresolvedEntry>"
            "</m:ResolveNames>"
        ).split("?>", 1)[1]
    )

    response = session_for(lab).post(lab.url, data=hostile, auth=(SERVICE, PASSWORD))

    assert response.status_code == 500
    assert fault_values(response)["ResponseCode"] == "ErrorSchemaValidation"


def test_password_reaches_no_log(
    start_lab: Callable[..., Lab], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lab")
    lab = start_lab()

    _ = account(lab, "ana.lopez@contoso.example").calendar
    with pytest.raises(UnauthorizedError):
        _ = account(lab, "ben.okafor@contoso.example", password=PASSWORD + "x").root

    assert "operation=GetFolder status=200" in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(lab)
    assert all(PASSWORD not in repr(r) for r in lab.log)
    assert isinstance(lab.log[0], LabRequest)


def test_lab_password_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EWSREADY_PASSWORD", "from-the-environment")
    assert Lab(CONTOSO, workdir=tmp_path).password == "from-the-environment"
    assert Lab(CONTOSO, password="given").password == "given"
    monkeypatch.delenv("EWSREADY_PASSWORD")
    assert len(Lab(CONTOSO).password) >= 20
