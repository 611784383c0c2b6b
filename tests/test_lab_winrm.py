"""The lab's PowerShell remoting, driven by the real pypsrp client.

Every test reaches the scenario's host name over TLS on 127.0.0.1 (the audit's pinned
transport mounted on pypsrp's requests session), trusting only the lab's stand-in
public root, and signs in with Basic as the lab's reader account. The shapes asserted
here (what pypsrp makes of each property) are the ones the audit's shell probe reads.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
from psrpcore.types import PSList, deserialize
from pypsrp.complex_objects import GenericComplexObject, RunspacePoolState
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

import lab.shell
from ewsready.transport import ROUTES, PinnedAdapter, Route
from lab import Lab, ShellCall, load_scenario
from lab.scenario import LabAccount, LabGroup, LabMailbox, LabRoleAssignment, LabServer
from lab.winrm import (
    INTERNAL_ERROR,
    OPERATION_TIMEOUT,
    RESOURCE_NOT_FOUND,
    SHELL_NOT_FOUND,
    ShellService,
)

REAL = Path(__file__).resolve().parent / "data" / "exchange-clixml"
SERVICE = "svc-calendar@contoso.example"
CONFIGURATION = {"PowerShell": "Microsoft.Exchange", "wsman": "Microsoft.PowerShell"}
LOCALIZED = "dieter.braun@contoso.example"  # his calendar is "Kalender"


# Connecting ----------------------------------------------------------------------


def connect(
    lab: Lab,
    path: str = "PowerShell",
    password: str | None = None,
    username: str | None = None,
) -> WSMan:
    """pypsrp's WSMan for a lab endpoint: the host name in the URL, 127.0.0.1 on the
    wire. pypsrp builds its requests session on first use; building it here lets the
    audit's pinned adapter replace pypsrp's own for https."""
    ROUTES.set(
        lab.scenario.ews_host,
        lab.ews_port,
        Route(("127.0.0.1",), str(lab.public_root_bundle), loopback_only=True),
    )
    _ROUTED.add((lab.scenario.ews_host, lab.ews_port))
    wsman = WSMan(
        server=lab.scenario.ews_host,
        port=lab.ews_port,
        path=path,
        ssl=True,
        auth="basic",
        username=lab.shell_username if username is None else username,
        password=lab.shell_password if password is None else password,
        cert_validation=str(lab.public_root_bundle),
        connection_timeout=5,
        read_timeout=30,
        operation_timeout=10,
        no_proxy=True,
    )
    session = wsman.transport._build_session()
    session.mount("https://", PinnedAdapter())
    wsman.transport.session = session
    return wsman


@contextlib.contextmanager
def shell(lab: Lab, path: str = "PowerShell", **kwargs: Any) -> Iterator[RunspacePool]:
    configuration = kwargs.pop("configuration", CONFIGURATION[path])
    with connect(lab, path, **kwargs) as wsman:
        with RunspacePool(wsman, configuration_name=configuration) as pool:
            yield pool


def run(
    pool: RunspacePool, *commands: str | tuple[str, dict]
) -> tuple[PowerShell, list]:
    """Invoke one pipeline; a parameter whose value is True is sent as a switch."""
    ps = PowerShell(pool)
    for command in commands:
        name, parameters = (command, {}) if isinstance(command, str) else command
        ps.add_cmdlet(name)
        for key, value in parameters.items():
            if value is True:
                ps.add_parameter(key)
            else:
                ps.add_parameter(key, value)
    return ps, ps.invoke()


def items(value: GenericComplexObject | list) -> list[str]:
    """The entries of a multi-valued property as text.

    pypsrp turns a type chain it knows as a list (X[], System.Array) into a list;
    any other (Exchange's MultiValuedProperty) stays a GenericComplexObject whose one
    property_sets entry is the LST markup.
    """
    if isinstance(value, list):
        return [str(v) for v in value]
    assert isinstance(value, GenericComplexObject)
    (markup,) = value.property_sets
    assert markup.startswith("<LST")
    return [
        e.findtext("ToString") or e.text or "" for e in ElementTree.fromstring(markup)
    ]


def full(obj: GenericComplexObject) -> Any:
    """The whole output object through psrpcore's deserializer (pypsrp keeps the
    CLIXML of each object in `_xml`): lists become PSList, enums PSInt with text."""
    return deserialize(ElementTree.fromstring(obj._xml), None)


def by_name(objects: list, name: str = "Name") -> dict[str, GenericComplexObject]:
    return {o.adapted_properties[name]: o for o in objects}


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


_ROUTED: set[tuple[str, int]] = set()


@pytest.fixture(autouse=True)
def _routes() -> Iterator[None]:
    """Forget the routes this module's tests set, and only those."""
    yield
    while _ROUTED:
        ROUTES.remove(*_ROUTED.pop())


@pytest.fixture(scope="module")
def contoso() -> Iterator[Lab]:
    scenario = load_scenario("contoso")
    scenario = dataclasses.replace(
        scenario,
        mailboxes=(
            *scenario.mailboxes,
            LabMailbox(
                primary="ben.okafor@contoso.example",
                display_name="Ben Okafor",
                delegate_right="Reviewer",
                send_as_deny=True,
            ),
        ),
        servers=(
            LabServer(),
            LabServer(
                name="EX02",
                ews_basic=False,
                ews_external_url="none",
                iis_certificate="internal_ca",
            ),
        ),
    )
    with Lab(scenario) as started:
        yield started


@pytest.fixture(scope="module")
def thousand() -> Iterator[Lab]:
    scenario = load_scenario("healthy").with_generated_users(1000, "contoso.example")
    with Lab(scenario) as started:
        yield started


# The WSMan layer -------------------------------------------------------------------


def test_pool_opens_and_closes(contoso: Lab) -> None:
    contoso.clear_log()

    with shell(contoso) as pool:
        opened = [(r.operation, r.status) for r in contoso.log]
        assert pool.state == RunspacePoolState.OPENED
        assert pool.is_alive()

    assert opened == [("Create", 200), ("Receive", 200)]
    assert [r.operation for r in contoso.log] == ["Create", "Receive", "Get", "Delete"]
    assert {r.path for r in contoso.log} == {"/PowerShell"}
    assert {r.user for r in contoso.log} == {contoso.shell_username}
    assert contoso.shell_log == []


def test_lab_names_its_endpoints_and_account(contoso: Lab) -> None:
    host = f"https://mail.contoso.example:{contoso.ews_port}"
    assert contoso.shell_url == f"{host}/PowerShell"
    assert contoso.dc_url == f"{host}/wsman"
    assert contoso.shell_username == "audit-reader@contoso.example"
    assert contoso.shell_password not in repr(contoso)


def test_shell_password_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EWSREADY_SHELL_PASSWORD", "canary-Shell-7f3c")
    assert Lab(load_scenario("healthy")).shell_password == "canary-Shell-7f3c"
    monkeypatch.delenv("EWSREADY_SHELL_PASSWORD")
    first, second = Lab(load_scenario("healthy")), Lab(load_scenario("healthy"))
    assert first.shell_password != second.shell_password


@pytest.mark.parametrize("who", ["wrong password", "EWS account"])
def test_only_the_reader_account_signs_in(contoso: Lab, who: str) -> None:
    contoso.clear_log()
    if who == "EWS account":
        connection = connect(contoso, username=SERVICE, password=contoso.password)
    else:
        connection = connect(contoso, password="not-" + contoso.shell_password)

    with pytest.raises(AuthenticationError), connection:
        RunspacePool(connection, configuration_name="Microsoft.Exchange").open()

    assert [(r.operation, r.status, r.user) for r in contoso.log] == [
        ("Create", 401, None)
    ]


def test_401_offers_basic_and_ews_is_unchanged(contoso: Lab) -> None:
    connect(contoso)  # sets the route
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", PinnedAdapter())

    answer = session.post(contoso.shell_url, data=b"<x/>", timeout=5)
    ews = session.get(contoso.url, timeout=5)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="mail.contoso.example"'
    assert ews.status_code == 401  # EWS still answers as before, with its own schemes
    assert "Negotiate" in ews.headers["WWW-Authenticate"]


def test_wrong_configuration_name_is_a_fault(contoso: Lab) -> None:
    with pytest.raises(WSManFaultError) as caught:
        with shell(contoso, configuration="Microsoft.PowerShell"):
            pass
    assert caught.value.code == RESOURCE_NOT_FOUND
    assert "Microsoft.PowerShell session configuration" in caught.value.reason


def test_hostile_request_bodies_get_faults(contoso: Lab) -> None:
    connect(contoso)
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", PinnedAdapter())
    session.auth = (contoso.shell_username, contoso.shell_password)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;">]><s>&b;</s>'
    )

    for body in (bomb, b"not xml", b"<Envelope/>"):
        answer = session.post(contoso.shell_url, data=body, timeout=5)
        assert answer.status_code == 500
        assert answer.headers["Content-Type"].startswith("application/soap+xml")
        assert b"WSManFault" in answer.content and b"aaaaaaaa" not in answer.content


def test_a_handler_exception_is_a_fault_not_a_dropped_socket(
    contoso: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("injected")

    with connect(contoso) as wsman:
        monkeypatch.setattr(ShellService, "_receive", boom)
        pool = RunspacePool(wsman, configuration_name="Microsoft.Exchange")
        with pytest.raises(WSManFaultError) as caught:
            pool.open()
        monkeypatch.undo()
        again = RunspacePool(wsman, configuration_name="Microsoft.Exchange")
        again.open()  # the same connection still works
        again.close()

    assert caught.value.code == INTERNAL_ERROR


def test_a_failing_cmdlet_fails_its_pipeline(
    contoso: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> Iterator[object]:
        raise KeyError("injected")
        yield

    spec = lab.shell.EXCHANGE_CMDLETS["get-exchangeserver"]
    monkeypatch.setitem(
        lab.shell.EXCHANGE_CMDLETS,
        "get-exchangeserver",
        dataclasses.replace(spec, run=boom),
    )
    with shell(contoso) as pool:
        ps, output = run(pool, "Get-ExchangeServer")
        after, servers = run(pool, "Get-ManagementScope")

    assert ps.had_errors and output == []
    assert ps.streams.error[0].reason == "InvalidOperationException"
    assert not after.had_errors and servers


def test_closed_shell_is_gone(contoso: Lab) -> None:
    with connect(contoso) as wsman:
        pool = RunspacePool(wsman, configuration_name="Microsoft.Exchange")
        pool.open()
        pool.close()
        contoso.clear_log()
        assert not pool.is_alive()

    assert [(r.operation, r.response_code) for r in contoso.log] == [
        ("Get", str(SHELL_NOT_FOUND))
    ]


def test_pipelines_are_routed_per_command_id(contoso: Lab) -> None:
    with shell(contoso) as pool:
        mailboxes = PowerShell(pool).add_cmdlet("Get-Mailbox")
        servers = PowerShell(pool).add_cmdlet("Get-ExchangeServer")
        mailboxes.begin_invoke()
        servers.begin_invoke()
        server_output = servers.end_invoke()
        mailbox_output = mailboxes.end_invoke()

    assert [str(o) for o in server_output] == ["EX01", "EX02"]
    assert all(o.types[0].endswith(".Mailbox") for o in mailbox_output)
    assert len(mailbox_output) == 7


def test_two_pools_in_parallel(contoso: Lab) -> None:
    results: dict[str, int] = {}

    def work(name: str) -> None:
        with shell(contoso) as pool:
            results[name] = len(run(pool, "Get-Mailbox")[1])

    threads = [threading.Thread(target=work, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == {"a": 7, "b": 7}


def test_pipeline_input_from_the_client(contoso: Lab) -> None:
    contoso.clear_log()
    with shell(contoso) as pool:
        ps = PowerShell(pool).add_cmdlet("Get-Mailbox")
        output = ps.invoke(input=["alopez@contoso.example", "nobody"])
        ps.close()

    assert [str(o) for o in output] == ["Ana López"]
    assert not ps.had_errors and len(ps.streams.error) == 1
    operations = [r.operation for r in contoso.log]
    assert operations[2:] == ["Command", "Send", "Receive", "Signal", "Delete"]


def test_receive_without_output_times_out_for_a_retry(contoso: Lab) -> None:
    with shell(contoso) as pool:
        with pytest.raises(WSManFaultError) as caught:
            pool._receive(timeout=1)  # the pool itself has nothing more to say
    assert caught.value.code == OPERATION_TIMEOUT


def test_stopping_a_long_pipeline(thousand: Lab) -> None:
    thousand.clear_log()
    with shell(thousand) as pool:
        ps = PowerShell(pool).add_cmdlet("Get-Mailbox")
        ps.add_parameter("ResultSize", "Unlimited")
        ps.begin_invoke()
        ps.poll_invoke()
        ps.stop()
        after, servers = run(pool, "Get-ExchangeServer")

    assert 0 < len(ps.output) < 1006
    assert [c.outcome for c in thousand.shell_log] == ["Stopped", "Completed"]
    assert len(servers) == 1 and not after.had_errors


def test_a_dtd_inside_psrp_data_is_refused(contoso: Lab) -> None:
    connect(contoso)
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", PinnedAdapter())
    session.auth = (contoso.shell_username, contoso.shell_password)
    data = base64.b64encode(b"\x00" * 21 + b'<!DOCTYPE x [<!ENTITY a "b">]><x/>')
    envelope = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">'
        "<s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
        "</a:Action><a:MessageID>uuid:1</a:MessageID><w:ResourceURI>"
        "http://schemas.microsoft.com/powershell/Microsoft.Exchange</w:ResourceURI>"
        "</s:Header><s:Body><rsp:Shell xmlns:rsp="
        '"http://schemas.microsoft.com/wbem/wsman/1/windows/shell">'
        '<creationXml xmlns="http://schemas.microsoft.com/powershell">'
        f"{data.decode()}</creationXml></rsp:Shell></s:Body></s:Envelope>"
    )

    answer = session.post(contoso.shell_url, data=envelope.encode(), timeout=5)

    assert answer.status_code == 500
    assert b"declares a DTD" in answer.content
    assert b"<a:RelatesTo>uuid:1</a:RelatesTo>" in answer.content


# Refusals ------------------------------------------------------------------------


def test_unknown_and_writing_cmdlets_are_not_found(contoso: Lab) -> None:
    contoso.clear_log()
    with shell(contoso) as pool:
        for name in ("Get-RecipientPermission", "Set-Mailbox", "Get-ADUser"):
            ps, output = run(pool, (name, {"Identity": "ana.lopez@contoso.example"}))
            (error,) = ps.streams.error
            assert ps.had_errors and output == []
            assert error.reason == "CommandNotFoundException"
            assert error.fq_error == "CommandNotFoundException"
            assert f"'{name}' is not recognized" in str(error)
            assert error.exception.types[0].endswith(".CommandNotFoundException")

    assert [(c.commands, c.outcome) for c in contoso.shell_log] == [
        (("Get-RecipientPermission",), "Failed"),
        (("Set-Mailbox",), "Failed"),
        (("Get-ADUser",), "Failed"),
    ]
    assert contoso.shell_log[1].parameters == (
        {"Identity": "ana.lopez@contoso.example"},
    )


def test_scripts_are_refused_in_no_language_mode(contoso: Lab) -> None:
    contoso.clear_log()
    with shell(contoso) as pool:
        ps = PowerShell(pool).add_script("Get-Mailbox | Remove-Mailbox")
        assert ps.invoke() == []

    assert ps.had_errors
    assert "no-language mode" in str(ps.streams.error[0])
    assert ps.streams.error[0].fq_error == "ScriptsNotAllowed"
    (call,) = contoso.shell_log
    assert call.commands == ("<script>",) and call.outcome == "Failed"


def test_unknown_parameter_fails_the_pipeline(contoso: Lab) -> None:
    with shell(contoso) as pool:
        ps, output = run(pool, ("Get-Mailbox", {"Identitty": "ana.lopez"}))
    assert ps.had_errors and output == []
    assert ps.streams.error[0].fq_error == "NamedParameterNotFound,Get-Mailbox"


# Exchange's configuration ------------------------------------------------------------


def test_get_exchange_server(contoso: Lab) -> None:
    with shell(contoso) as pool:
        ps, output = run(pool, "Get-ExchangeServer")
    ex01 = by_name(output)["EX01"]
    props = ex01.adapted_properties

    assert ex01.types == [
        "Microsoft.Exchange.Data.Directory.Management.ExchangeServer",
        "Microsoft.Exchange.Data.Directory.Management.ADPresentationObject",
        "Microsoft.Exchange.Data.Directory.ADObject",
        "Microsoft.Exchange.Data.Directory.ADRawEntry",
        "Microsoft.Exchange.Data.ConfigurableObject",
        "System.Object",
    ]
    assert str(ex01) == "EX01"
    assert props["Fqdn"] == "ex01.contoso.local"
    version = props["AdminDisplayVersion"]
    assert str(version) == "Version 15.1 (Build 2507.39)"
    assert version.adapted_properties == {
        "Major": 15,
        "Minor": 1,
        "Build": 2507,
        "Revision": 39,
        "FilePatchLevelDescription": None,
    }
    assert version.types == ["Microsoft.Exchange.Data.ServerVersion", "System.Object"]
    edition, role = props["Edition"], props["ServerRole"]
    assert (str(edition), edition.property_sets, edition.types[1]) == (
        "Standard",
        [1],
        "System.Enum",
    )
    assert str(role) == "Mailbox"
    assert props["IsMailboxServer"] is True and props["IsClientAccessServer"] is True
    assert str(props["Site"]).endswith("/Sites/Default-First-Site-Name")
    assert str(props["Identity"]) == "EX01"
    assert items(props["ObjectClass"]) == ["top", "server", "msExchExchangeServer"]
    assert parse_time(props["WhenCreated"]).tzinfo is not None
    assert ex01.extended_properties["PSComputerName"] == "ex01.contoso.local"


def test_exchange_server_identity_and_versions(contoso: Lab) -> None:
    scenario = dataclasses.replace(
        contoso.scenario,
        servers=(
            LabServer(
                name="EX13", version="15.0.1497.2", roles=("Mailbox", "ClientAccess")
            ),
        ),
    )
    with Lab(scenario) as other, shell(other) as pool:
        _, output = run(pool, ("Get-ExchangeServer", {"Identity": "ex13"}))
        missing, nothing = run(pool, ("Get-ExchangeServer", {"Identity": "EX99"}))

    (ex13,) = output
    assert str(ex13.adapted_properties["AdminDisplayVersion"]) == (
        "Version 15.0 (Build 1497.2)"
    )
    assert str(ex13.adapted_properties["ServerRole"]) == "Mailbox, ClientAccess"
    assert nothing == [] and not missing.had_errors  # non-terminating, as Exchange
    assert missing.streams.error[0].reason == "ManagementObjectNotFoundException"


def test_get_web_services_virtual_directory(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, output = run(
            pool, ("Get-WebServicesVirtualDirectory", {"ADPropertiesOnly": True})
        )
        _, one = run(pool, ("Get-WebServicesVirtualDirectory", {"Server": "EX02"}))
    vdirs = {str(o): o for o in output}
    ex01 = vdirs["EX01\\EWS (Default Web Site)"].adapted_properties
    ex02 = vdirs["EX02\\EWS (Default Web Site)"].adapted_properties

    assert ex01["Name"] == "EWS (Default Web Site)"
    assert str(ex01["Server"]) == "EX01"
    assert ex01["BasicAuthentication"] is True and ex02["BasicAuthentication"] is False
    assert ex01["WindowsAuthentication"] is True
    assert ex01["DigestAuthentication"] is False and ex01["OAuthAuthentication"] is True
    assert ex01["InternalUrl"] == "https://ex01.contoso.local/EWS/Exchange.asmx"
    assert ex01["ExternalUrl"] == "https://mail.contoso.example/EWS/Exchange.asmx"
    assert ex02["ExternalUrl"] is None
    assert items(ex01["InternalAuthenticationMethods"]) == [
        "Basic",
        "Ntlm",
        "WindowsIntegrated",
        "WSSecurity",
        "OAuth",
    ]
    assert "Basic" not in items(ex02["ExternalAuthenticationMethods"])
    assert [str(o) for o in one] == ["EX02\\EWS (Default Web Site)"]


def test_psrpcore_reads_what_pypsrp_leaves_as_markup(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, output = run(pool, ("Get-WebServicesVirtualDirectory", {"Server": "EX01"}))
    vdir = full(output[0])

    methods = vdir.InternalAuthenticationMethods
    assert isinstance(methods, PSList)
    assert [str(m) for m in methods][:2] == ["Basic", "Ntlm"]
    assert [int(m) for m in methods][:2] == [0, 2]
    assert vdir.PSTypeNames[0] == (
        "Deserialized.Microsoft.Exchange.Data.Directory.SystemConfiguration."
        "ADWebServicesVirtualDirectory"
    )
    assert vdir.AdminDisplayVersion.Build == 2507


def _presented_certificate(lab: Lab) -> bytes:
    context = ssl.create_default_context(cafile=str(lab.public_root_bundle))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", lab.ews_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=lab.scenario.ews_host) as tls:
            return tls.getpeercert(binary_form=True)


def test_get_exchange_certificate(contoso: Lab) -> None:
    presented = _presented_certificate(contoso)
    thumbprint = hashlib.sha1(presented).hexdigest().upper()
    with shell(contoso) as pool:
        _, output = run(pool, ("Get-ExchangeCertificate", {"Server": "EX01"}))
        _, chosen = run(pool, ("Get-ExchangeCertificate", {"Thumbprint": thumbprint}))
        _, ex02 = run(pool, ("Get-ExchangeCertificate", {"Server": "EX02"}))
    iis, own = (o.adapted_properties for o in output)

    assert iis["Thumbprint"] == thumbprint
    assert iis["RawData"] == presented
    assert iis["Identity"] == f"EX01\\{thumbprint}"
    assert iis["Subject"] == "CN=mail.contoso.example"
    assert iis["Issuer"] == "CN=Lab Public Issuing CA 1, O=Lab Trust Services, C=US"
    assert items(iis["CertificateDomains"]) == ["mail.contoso.example"]
    assert str(iis["Services"]) == "IIS, SMTP" and iis["Services"].property_sets == [24]
    assert str(iis["RootCAType"]) == "ThirdParty"
    assert str(iis["Status"]) == "Valid"  # contoso's certificate expires soon, not yet
    assert iis["IsSelfSigned"] is False
    not_after = parse_time(iis["NotAfter"])
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    assert not_after < soon
    assert str(output[0]).startswith("[Subject]\r\n  CN=mail.contoso.example")
    assert (own["IsSelfSigned"], str(own["Services"]), str(own["RootCAType"])) == (
        True,
        "SMTP",
        "Registry",
    )
    assert own["FriendlyName"] == "Microsoft Exchange"
    assert [str(o.adapted_properties["Thumbprint"]) for o in chosen] == [thumbprint]
    assert str(ex02[0].adapted_properties["RootCAType"]) == "Enterprise"


@pytest.mark.parametrize(
    "variant, status, root",
    [("expired", "DateInvalid", "ThirdParty"), ("self_signed", "Valid", "Registry")],
)
def test_certificate_variants(variant: str, status: str, root: str) -> None:
    # The front end presents the scenario's certificate to /PowerShell as well (one
    # IIS binding for both), so the variant goes on the server's store only.
    scenario = dataclasses.replace(
        load_scenario("healthy"), servers=(LabServer(iis_certificate=variant),)
    )
    with Lab(scenario) as other, shell(other) as pool:
        _, output = run(pool, "Get-ExchangeCertificate")
    iis = output[0].adapted_properties
    assert (str(iis["Status"]), str(iis["RootCAType"])) == (status, root)


def test_a_bad_front_end_certificate_stops_the_shell_too() -> None:
    scenario = dataclasses.replace(load_scenario("healthy"), certificate="expired")
    with Lab(scenario) as other:
        with pytest.raises(requests.exceptions.SSLError):
            with shell(other):
                pass


# Role-based access control ---------------------------------------------------------


def test_role_assignment_of_the_usual_scenario(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, output = run(
            pool, ("Get-ManagementRoleAssignment", {"Role": "ApplicationImpersonation"})
        )
        _, effective = run(
            pool,
            (
                "Get-ManagementRoleAssignment",
                {"Role": "ApplicationImpersonation", "GetEffectiveUsers": True},
            ),
        )
    (row,) = output
    props = row.adapted_properties

    assert props["Name"] == str(row) == "CalendarServiceImpersonation"
    assert str(props["Role"]) == "ApplicationImpersonation"
    assert str(props["RoleAssignee"]) == "contoso.local/Users/svc-calendar"
    assert props["RoleAssigneeName"] == "svc-calendar"
    assert str(props["RoleAssigneeType"]) == "User"
    assert str(props["RecipientWriteScope"]) == "CustomRecipientScope"
    assert str(props["CustomRecipientWriteScope"]) == "CalendarServiceMailboxes"
    assert str(props["RoleAssignmentDelegationType"]) == "Regular"
    assert props["Enabled"] is True
    assert effective[0].adapted_properties["EffectiveUserName"] == "svc-calendar"


def test_role_assignments_expand_groups_and_org_management() -> None:
    base = load_scenario("healthy")
    scenario = dataclasses.replace(
        base,
        groups=(
            LabGroup(
                "Calendar Services", ("Calendar Robots", "ana.lopez@contoso.example")
            ),
            LabGroup("Calendar Robots", (SERVICE, "Calendar Services")),
            LabGroup(
                "Organization Management", ("admin@contoso.example",), "RoleGroup"
            ),
        ),
        role_assignments=(
            LabRoleAssignment(
                name="Impersonation-Calendar Services",
                assignee="Calendar Services",
                assignee_type="SecurityGroup",
            ),
        ),
    )
    with Lab(scenario) as other, shell(other) as pool:
        _, rows = run(
            pool,
            (
                "Get-ManagementRoleAssignment",
                {"Role": "ApplicationImpersonation", "GetEffectiveUsers": True},
            ),
        )
        _, admin = run(
            pool,
            (
                "Get-ManagementRoleAssignment",
                {"RoleAssignee": "admin@contoso.example", "GetEffectiveUsers": True},
            ),
        )
        _, grouped = run(pool, ("Get-ManagementRoleAssignment", {"Identity": "Imp*"}))

    users = {
        (
            r.adapted_properties["EffectiveUserName"],
            str(r.adapted_properties["RecipientWriteScope"]),
            str(r.adapted_properties["RoleAssignmentDelegationType"]),
        )
        for r in rows
    }
    assert users == {
        ("svc-calendar", "Organization", "Regular"),
        ("Ana López", "Organization", "Regular"),
        ("admin", "Organization", "DelegatingOrgWide"),
    }
    roles = Counter(str(r.adapted_properties["Role"]) for r in admin)
    assert roles["Mail Recipients"] == 1 and len(roles) > 10
    impersonation = [
        r
        for r in admin
        if str(r.adapted_properties["Role"]) == "ApplicationImpersonation"
    ]
    assert [
        str(r.adapted_properties["RoleAssignmentDelegationType"]) for r in impersonation
    ] == ["DelegatingOrgWide"]
    (group_row,) = grouped
    assert group_row.adapted_properties["EffectiveUserName"] == "All Group Members"
    assert str(group_row.adapted_properties["RoleAssigneeType"]) == "SecurityGroup"


def test_management_scope_and_its_recipients(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, (scope,) = run(pool, "Get-ManagementScope")
        opath = scope.adapted_properties["RecipientFilter"]
        _, members = run(
            pool,
            (
                "Get-Recipient",
                {"RecipientPreviewFilter": opath, "ResultSize": "Unlimited"},
            ),
        )
        _, rooms = run(
            pool,
            (
                "Get-Recipient",
                {
                    "RecipientPreviewFilter": "(RecipientTypeDetails -eq 'RoomMailbox') -or (RecipientTypeDetails -eq 'EquipmentMailbox')",
                    "ResultSize": "Unlimited",
                },
            ),
        )
        refused, nothing = run(
            pool,
            ("Get-Recipient", {"RecipientPreviewFilter": "Department -eq 'Sales'"}),
        )

    assert scope.adapted_properties["Name"] == "CalendarServiceMailboxes"
    assert opath == "CustomAttribute15 -eq 'CalendarService'"
    assert scope.adapted_properties["RecipientRoot"] is None
    assert str(scope.adapted_properties["ScopeRestrictionType"]) == "RecipientScope"
    assert scope.adapted_properties["Exclusive"] is False
    addresses = {m.adapted_properties["PrimarySmtpAddress"] for m in members}
    assert "ana.lopez@contoso.example" in addresses
    assert "room.harbour@contoso.example" not in addresses  # out of contoso's scope
    assert SERVICE not in addresses
    member = members[0].adapted_properties
    assert {"Name", "Alias", "DisplayName", "EmailAddresses"} <= set(member)
    assert str(member["RecipientTypeDetails"]) == "UserMailbox"
    assert [m.adapted_properties["Alias"] for m in rooms] == ["room.harbour"]
    assert refused.had_errors and nothing == []
    assert "cannot evaluate the filter" in str(refused.streams.error[0])


# Mailboxes, folders and permissions --------------------------------------------------


def test_get_mailbox(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, everyone = run(pool, "Get-Mailbox")
        found = {
            identity: [
                str(o) for o in run(pool, ("Get-Mailbox", {"Identity": identity}))[1]
            ]
            for identity in (
                "alopez@contoso.example",
                "ana.lopez",
                "contoso.local/Users/Ana López",
                "ANA.LOPEZ@contoso.example",
            )
        }
        missing, none = run(
            pool, ("Get-Mailbox", {"Identity": "nobody@contoso.example"})
        )
        _, rooms = run(pool, ("Get-Mailbox", {"RecipientTypeDetails": "RoomMailbox"}))
    ana = by_name(everyone)["Ana López"]
    props = ana.adapted_properties

    assert ana.types[0] == "Microsoft.Exchange.Data.Directory.Management.Mailbox"
    assert str(props["Identity"]) == "contoso.local/Users/Ana López"
    assert props["Alias"] == "ana.lopez" and props["DisplayName"] == "Ana López"
    assert props["PrimarySmtpAddress"] == "ana.lopez@contoso.example"
    assert props["UserPrincipalName"] == "ana.lopez@contoso.example"
    assert items(props["EmailAddresses"]) == [
        "SMTP:ana.lopez@contoso.example",
        "smtp:alopez@contoso.example",
    ]
    assert str(props["RecipientTypeDetails"]) == "UserMailbox"
    assert props["ServerName"] == "ex01" and str(props["Database"]) == "DB01"
    assert items(by_name(everyone)["Chloé Martin"].adapted_properties["Languages"]) == [
        "fr-FR"
    ]
    assert SERVICE in {o.adapted_properties["PrimarySmtpAddress"] for o in everyone}
    assert set(map(tuple, found.values())) == {("Ana López",)}
    assert none == [] and not missing.had_errors
    assert "couldn't be found" in str(missing.streams.error[0])
    assert [str(o) for o in rooms] == ["Harbour Room"]


def test_default_result_size_warns(
    contoso: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab.shell, "DEFAULT_RESULT_SIZE", 3)
    with shell(contoso) as pool:
        capped, three = run(pool, "Get-Mailbox")
        _, everyone = run(pool, ("Get-Mailbox", {"ResultSize": "Unlimited"}))
    assert len(three) == 3 and len(everyone) == 7
    assert "ResultSize Unlimited" in capped.streams.warning[0].message


def test_folder_statistics_show_the_localized_calendar(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, folders = run(
            pool,
            (
                "Get-MailboxFolderStatistics",
                {"Identity": LOCALIZED, "FolderScope": "Calendar"},
            ),
        )
    calendar, holidays = (f.adapted_properties for f in folders)

    assert (calendar["Name"], calendar["FolderType"], calendar["FolderPath"]) == (
        "Kalender",
        "Calendar",
        "/Kalender",
    )
    assert calendar["Identity"] == f"{LOCALIZED}\\Kalender"
    assert holidays["FolderType"] == "User Created"
    assert holidays["FolderPath"] == "/Kalender/Holidays"
    assert isinstance(calendar["ItemsInFolder"], int)


def test_folder_permission_by_name(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, rows = run(
            pool,
            ("Get-MailboxFolderPermission", {"Identity": f"{LOCALIZED}:\\Kalender"}),
        )
        wrong, nothing = run(
            pool,
            ("Get-MailboxFolderPermission", {"Identity": f"{LOCALIZED}:\\Calendar"}),
        )
        _, mine = run(
            pool,
            (
                "Get-MailboxFolderPermission",
                {"Identity": "ben.okafor@contoso.example:\\Calendar", "User": SERVICE},
            ),
        )
    entries = {str(r.adapted_properties["User"]): r.adapted_properties for r in rows}

    assert items(entries["Default"]["AccessRights"]) == ["AvailabilityOnly"]
    assert items(entries["Anonymous"]["AccessRights"]) == ["None"]
    assert items(entries["svc-calendar"]["AccessRights"]) == ["Editor"]
    assert entries["svc-calendar"]["FolderName"] == "Kalender"
    assert entries["svc-calendar"]["Identity"] == f"{LOCALIZED}:\\Kalender"
    assert nothing == [] and not wrong.had_errors
    (error,) = wrong.streams.error
    assert error.reason == "ManagementObjectNotFoundException"
    assert f"'{LOCALIZED}:\\Calendar' couldn't be found" in str(error)
    assert [items(r.adapted_properties["AccessRights"]) for r in mine] == [["Reviewer"]]


def test_send_as_rows(contoso: Lab) -> None:
    with shell(contoso) as pool:
        _, ana = run(
            pool, ("Get-ADPermission", {"Identity": "ana.lopez@contoso.example"})
        )
        _, ben = run(
            pool,
            (
                "Get-ADPermission",
                {"Identity": "ben.okafor@contoso.example", "User": SERVICE},
            ),
        )
    users = [str(r.adapted_properties["User"]) for r in ana]
    mine = [
        r.adapted_properties
        for r in ana
        if str(r.adapted_properties["User"]) == "CONTOSO\\svc-calendar"
    ]

    assert "NT AUTHORITY\\SELF" in users and "CONTOSO\\Domain Admins" in users
    (allow,) = mine
    assert items(allow["ExtendedRights"]) == ["Send-As"]
    assert items(allow["AccessRights"]) == ["ExtendedRight"]
    assert (allow["Deny"], allow["IsInherited"]) == (False, False)
    assert str(allow["Identity"]) == "contoso.local/Users/Ana López"
    assert sorted(r.adapted_properties["Deny"] for r in ben) == [False, True]


def test_an_unreadable_mailbox_is_an_error_record_not_a_failed_pipeline() -> None:
    every = ("Get-Mailbox", {"ResultSize": "Unlimited"})
    statistics = ("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"})
    with Lab(load_scenario("mailbox_unreadable")) as unreadable:
        with shell(unreadable) as pool:
            folders, stats = run(pool, every, statistics)
            permissions, rows = run(
                pool,
                every,
                statistics,
                ("Get-MailboxFolderPermission", {"User": SERVICE}),
            )
            acl, aces = run(pool, every, ("Get-ADPermission", {"User": SERVICE}))
        log = {c.commands[-1]: c for c in unreadable.shell_log}

    # Each pipeline completes with the other mailboxes' objects.
    assert not (folders.had_errors or permissions.had_errors or acl.had_errors)
    assert all(c.outcome == "Completed" for c in log.values())
    (error,) = folders.streams.error
    assert (error.reason, error.target_object, error.activity) == (
        "MailboxUnavailableException",
        "contoso.local/Users/Chloé Martin",
        "Get-MailboxFolderStatistics",
    )
    assert "'DB02'" in str(error) and error.category == 22  # ReadError
    owners = {str(f.adapted_properties["Identity"]).split("\\")[0] for f in stats}
    assert "chloe.martin@contoso.example" not in owners
    assert "ana.lopez@contoso.example" in owners

    moved = [
        e
        for e in permissions.streams.error
        if e.reason != "UserNotFoundInPermissionEntryException"
    ]
    assert [(e.reason, e.target_object) for e in moved] == [
        ("StoragePermanentException", "ben.okafor@contoso.example:\\Calendar"),
        (
            "StoragePermanentException",
            "ben.okafor@contoso.example:\\Calendar\\Holidays",
        ),
        ("MailboxUnavailableException", "contoso.local/Users/Chloé Martin"),
    ]
    assert {str(r.adapted_properties["Identity"]) for r in rows} == {
        "ana.lopez@contoso.example:\\Calendar",
        "dieter.braun@contoso.example:\\Kalender",
    }

    (denied,) = acl.streams.error
    assert (denied.reason, denied.target_object) == (
        "ADOperationException",
        "contoso.local/Users/Dieter Braun",
    )
    assert {str(r.adapted_properties["Identity"]) for r in aces} == {
        "contoso.local/Users/Ana López",
        "contoso.local/Users/Ben Okafor",
        "contoso.local/Users/Chloé Martin",
    }
    assert log["Get-ADPermission"].errors == ("ADOperationException",)


# The domain controller -------------------------------------------------------------


def test_get_ad_user_on_the_domain_controller(contoso: Lab) -> None:
    contoso.clear_log()
    with shell(contoso, "wsman") as pool:
        _, (plain,) = run(pool, ("Get-ADUser", {"Identity": "svc-calendar"}))
        _, (user,) = run(
            pool,
            (
                "Get-ADUser",
                {
                    "Identity": SERVICE,
                    "Properties": [
                        "PasswordLastSet",
                        "msDS-UserPasswordExpiryTimeComputed",
                        "LockedOut",
                        "PasswordExpired",
                        "PasswordNeverExpires",
                    ],
                },
            ),
        )
        unknown, nothing = run(pool, ("Get-ADUser", {"Identity": "nobody"}))
        exchange, _ = run(pool, "Get-Mailbox")
    props = user.adapted_properties

    assert "PasswordLastSet" not in plain.adapted_properties  # only when asked for
    assert user.types[0] == "Microsoft.ActiveDirectory.Management.ADUser"
    assert props["SamAccountName"] == "svc-calendar"
    assert props["UserPrincipalName"] == SERVICE
    assert props["DistinguishedName"] == str(user)
    assert (props["Enabled"], props["LockedOut"], props["PasswordExpired"]) == (
        True,
        False,
        False,
    )
    assert props["PasswordNeverExpires"] is False
    last_set = parse_time(props["PasswordLastSet"])
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - last_set) - datetime.timedelta(days=10)) < datetime.timedelta(
        minutes=5
    )
    expiry = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        microseconds=props["msDS-UserPasswordExpiryTimeComputed"] // 10
    )
    assert abs((expiry - now) - datetime.timedelta(days=80)) < datetime.timedelta(
        minutes=5
    )
    assert unknown.had_errors and nothing == []
    assert unknown.streams.error[0].reason == "ADIdentityNotFoundException"
    assert exchange.streams.error[0].reason == "CommandNotFoundException"
    assert {c.endpoint for c in contoso.shell_log} == {"/wsman"}
    assert {r.path for r in contoso.log} == {"/wsman"}


def test_password_that_never_expires() -> None:
    scenario = dataclasses.replace(
        load_scenario("healthy"), account=LabAccount(password_never_expires=True)
    )
    with Lab(scenario) as other, shell(other, "wsman") as pool:
        _, (user,) = run(pool, ("Get-ADUser", {"Identity": SERVICE, "Properties": "*"}))
    props = user.adapted_properties
    assert props["msDS-UserPasswordExpiryTimeComputed"] == 0x7FFFFFFFFFFFFFFF
    assert props["PasswordNeverExpires"] is True and props["PasswordExpired"] is False


def test_exchange_configuration_is_refused_on_the_domain_controller(
    contoso: Lab,
) -> None:
    with pytest.raises(WSManFaultError) as caught:
        with shell(contoso, "wsman", configuration="Microsoft.Exchange"):
            pass
    assert caught.value.code == RESOURCE_NOT_FOUND


# A thousand mailboxes, one pipeline each ----------------------------------------------


def _one_pipeline(
    lab: Lab, *commands: str | tuple[str, dict]
) -> tuple[PowerShell, list, Counter]:
    lab.clear_log()
    with shell(lab) as pool:
        lab.clear_log()
        ps, output = run(pool, *commands)
    operations = Counter(r.operation for r in lab.log)
    assert len(lab.shell_log) == 1 and lab.shell_log[0].outcome == "Completed"
    assert operations["Command"] == 1
    return ps, output, operations


def test_calendars_of_a_thousand_mailboxes_in_one_pipeline(thousand: Lab) -> None:
    ps, folders, operations = _one_pipeline(
        thousand,
        ("Get-Mailbox", {"ResultSize": "Unlimited"}),
        ("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"}),
    )

    assert len(folders) == 2 * 1006  # 1005 mailboxes and the service account's
    calendars = [f for f in folders if f.adapted_properties["FolderType"] == "Calendar"]
    assert len(calendars) == 1006
    assert {f.adapted_properties["Name"] for f in calendars} >= {"Kalender", "Calendar"}
    assert operations["Receive"] > 5  # streamed, not one giant answer
    assert thousand.shell_log[0].commands == (
        "Get-Mailbox",
        "Get-MailboxFolderStatistics",
    )


def test_calendar_permissions_of_a_thousand_mailboxes_in_one_pipeline(
    thousand: Lab,
) -> None:
    ps, rows, operations = _one_pipeline(
        thousand,
        ("Get-Mailbox", {"ResultSize": "Unlimited"}),
        ("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"}),
        ("Get-MailboxFolderPermission", {"User": SERVICE}),
    )

    assert len(rows) == 1005  # every calendar but the service account's own
    assert {items(r.adapted_properties["AccessRights"])[0] for r in rows} == {"Editor"}
    # Subfolders hold no entry for the account: one non-terminating error each.
    assert not ps.had_errors and len(ps.streams.error) == 1006 + 1
    assert operations["Receive"] > 5


def test_send_as_of_a_thousand_mailboxes_in_one_pipeline(thousand: Lab) -> None:
    ps, rows, operations = _one_pipeline(
        thousand,
        ("Get-Mailbox", {"ResultSize": "Unlimited"}),
        ("Get-ADPermission", {"User": SERVICE}),
    )

    assert len(rows) == 1005
    assert all(
        items(r.adapted_properties["ExtendedRights"]) == ["Send-As"] for r in rows
    )
    assert operations["Receive"] > 5
    assert ps.streams.error == []


# Replaying real Exchange ----------------------------------------------------------------


def test_real_exchange_objects_are_replayed() -> None:
    overrides = {
        name: REAL / f"{name.replace('-', '')}.xml"
        for name in (
            "Get-ExchangeServer",
            "Get-WebServicesVirtualDirectory",
            "Get-ExchangeCertificate",
            "Get-AcceptedDomain",
        )
    }
    with Lab(load_scenario("healthy"), shell_overrides=overrides) as other:
        with shell(other) as pool:
            _, (server,) = run(pool, ("Get-ExchangeServer", {"Identity": "anything"}))
            _, (vdir,) = run(
                pool, ("Get-WebServicesVirtualDirectory", {"ADPropertiesOnly": True})
            )
            _, certificates = run(pool, "Get-ExchangeCertificate")
            _, domains = run(pool, "Get-AcceptedDomain")
            refused, _ = run(pool, ("Get-ExchangeServer", {"NoSuchParameter": 1}))

    assert str(server) == "SOLO-E16A"
    assert (
        str(server.adapted_properties["AdminDisplayVersion"])
        == "Version 15.1 (Build 2375.7)"
    )
    assert (
        server.adapted_properties["AdminDisplayVersion"].adapted_properties["Build"]
        == 2375
    )
    assert str(server.adapted_properties["Edition"]) == "StandardEvaluation"
    assert str(vdir) == "SOLO-E16A\\EWS (Default Web Site)"
    assert vdir.adapted_properties["BasicAuthentication"] is False
    assert vdir.adapted_properties["ExternalUrl"] is None
    assert (
        vdir.adapted_properties["InternalUrl"]
        == "https://solo-e16a.solo.local/EWS/Exchange.asmx"
    )
    assert items(vdir.adapted_properties["InternalAuthenticationMethods"]) == [
        "Ntlm",
        "WindowsIntegrated",
        "WSSecurity",
        "OAuth",
    ]
    # Real Exchange sends a certificate's RawData only (the rest is binary).
    raw = [c.adapted_properties["RawData"] for c in certificates]
    assert set(certificates[0].adapted_properties) == {"RawData"}
    text = (REAL / "GetExchangeCertificate.xml").read_text(encoding="utf-8-sig")
    assert [base64.b64encode(r).decode() in text for r in raw] == [True] * 3
    assert len(domains) == 3
    assert refused.streams.error[0].reason == "ParameterBindingException"
    assert isinstance(other.shell_log[0], ShellCall)


@pytest.mark.parametrize(
    "ad_filter, found",
    [
        (f"UserPrincipalName -eq '{SERVICE}'", 1),
        (f"userPrincipalName -EQ '{SERVICE.upper()}'", 1),
        ("UserPrincipalName -eq 'o''brien@contoso.example'", 0),
    ],
)
def test_get_ad_user_by_upn_filter(contoso: Lab, ad_filter: str, found: int) -> None:
    with shell(contoso, "wsman") as pool:
        ps, output = run(pool, ("Get-ADUser", {"Filter": ad_filter}))
    # A filter that matches nobody answers nothing, without an error, as in AD.
    assert not ps.had_errors and len(output) == found


def test_get_ad_user_refuses_other_filters(contoso: Lab) -> None:
    with shell(contoso, "wsman") as pool:
        ps, output = run(pool, ("Get-ADUser", {"Filter": "Name -like '*'"}))
    assert ps.had_errors and output == []
    assert ps.streams.error[0].reason == "ArgumentException"
