"""WinRM/WSMan for the lab: PowerShell remoting on the same HTTPS server as EWS.

Exchange publishes remote PowerShell at https://HOST/PowerShell (configuration
"Microsoft.Exchange") through IIS, next to EWS; a domain controller answers at /wsman
(configuration "Microsoft.PowerShell"). `ShellService` is the request handler that
lab/ews.py hands those two paths to. It speaks the part of WS-Management that pypsrp
uses: Create (open a runspace pool), Command (start a pipeline), Send (more fragments
or pipeline input), Receive (output), Signal (stop or forget a pipeline), Delete
(close) and Get (pypsrp's is_alive), over SOAP 1.2 with Basic authentication.

The PowerShell Remoting Protocol itself is psrpcore's server side: one
ServerRunspacePool per shell, one ServerPipeline per command, created before the
command's data is fed in. psrpcore is not thread-safe, so each shell has one lock;
its output goes into one buffer for the whole pool, so the lab drains that buffer into
queues per pipeline (and one for the pool) and answers each Receive from the queue
its CommandId names. Output is made lazily: a Receive pulls objects from the cmdlet
until about one response's worth of fragments is queued, so Get-Mailbox over
thousands of mailboxes leaves in many Receive responses and is never built whole.

A WSMan fault (HTTP 500, a SOAP 1.2 Fault with a WSManFault detail) answers every
problem, including the lab's own failures: the socket is never just dropped.

The scenario's [winrm] table can break pipelines on purpose (lab.scenario.LabWinrm):
a WSMan fault or a terminating error part-way through a pipeline's output, or a
Receive that is held and never answered. A held Receive is released when the lab
stops (`close`) or the shell is deleted, so no server thread is left blocked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from psrpcore import (
    CreatePipelineEvent,
    EndOfPipelineInputEvent,
    GetAvailableRunspacesEvent,
    GetCommandMetadataEvent,
    PipelineInputEvent,
    PSRPPayload,
    ResetRunspaceStateEvent,
    ServerPipeline,
    ServerRunspacePool,
    SetMaxRunspacesEvent,
    SetMinRunspacesEvent,
    StreamType,
)
from psrpcore.types import PipelineState, PSInvocationState, RunspacePoolState

from lab.ews import HttpRequest, Reply, basic_credentials
from lab.ews_soap import SoapParseError, parse_xml
from lab.shell import (
    DOMAIN_CONTROLLER,
    EXCHANGE,
    CmdletError,
    LabError,
    ShellCall,
    ShellOrganisation,
    command_names,
    error_record,
    from_psobject,
    internal_error,
    parameters_of,
    to_psobject,
)

logger = logging.getLogger(__name__)

SOAP = "http://www.w3.org/2003/05/soap-envelope"
ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
POWERSHELL = "http://schemas.microsoft.com/powershell"
_NSMAP = {"s": SOAP, "a": ADDRESSING, "w": WSMAN, "x": TRANSFER, "rsp": SHELL}
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

# A Receive answer a hostile server might send: nested entities that expand to about a
# billion characters when a parser resolves them.
ENTITY_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE s:Envelope [\n<!ENTITY a "aaaaaaaaaa">\n'
    + b"".join(
        f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">\n'.encode()
        for n in range(8)
    )
    + b']>\n<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
    + b"<s:Body>&i;</s:Body></s:Envelope>"
)


class _EntityBomb(Exception):
    """The scenario answers this Receive with ENTITY_BOMB."""


# WSManFault codes pypsrp acts on, as WinRM sends them.
OPERATION_TIMEOUT = 2150858793  # no output within OperationTimeout: poll again
SHELL_NOT_FOUND = 2150858843  # the ShellId (or CommandId) names nothing
# Codes for faults pypsrp only reports; the lab's choice.
RESOURCE_NOT_FOUND = 2150858752  # no such session configuration on this endpoint
BAD_REQUEST = 2150858817  # a request the lab cannot read
ACTION_NOT_SUPPORTED = 2150858770
INTERNAL_ERROR = 2147500037  # E_FAIL: the lab itself failed

_COMMAND_DONE = f"{SHELL}/CommandState/Done"
_COMMAND_RUNNING = f"{SHELL}/CommandState/Running"

# What a Receive waits for output, at most, whatever OperationTimeout asks for.
MAX_WAIT = 60.0
# The envelope pypsrp allows itself when it does not say (its default).
DEFAULT_ENVELOPE = 153600
_ENVELOPE_OVERHEAD = 2048  # headers and elements around the base64 stream data
# Bytes of a PSRP message the lab looks through for DOCTYPE and ENTITY.
_GUARD_TAIL = 16


@dataclass(frozen=True)
class Endpoint:
    """One PowerShell endpoint on the front end."""

    path: str  # as the lab serves it, e.g. "/PowerShell"
    configuration: str  # the session configuration name

    @property
    def resource_uri(self) -> str:
        return f"{POWERSHELL}/{self.configuration}"


ENDPOINTS = {
    "/powershell": Endpoint(EXCHANGE, "Microsoft.Exchange"),
    "/wsman": Endpoint(DOMAIN_CONTROLLER, "Microsoft.PowerShell"),
}


class WsmanFault(Exception):
    """A problem answered with a WSMan fault."""

    def __init__(self, code: int, message: str, subcode: str = "w:InternalError"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.subcode = subcode


@dataclass(frozen=True)
class _Request:
    action: str  # the short name, e.g. "Receive"
    message_id: str | None
    resource_uri: str
    shell_id: str | None
    timeout: float
    max_envelope: int
    body: etree._Element | None


def _short_action(uri: str) -> str:
    return uri.rstrip("/").rpartition("/")[2] or uri


def _duration(text: str | None) -> float | None:
    """Seconds in an xs:duration such as "PT20S" or "PT60.000S"."""
    if not text:
        return None
    match = re.fullmatch(
        r"\s*P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\s*", text
    )
    if match is None:
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _parse(body: bytes) -> _Request:
    try:
        root = parse_xml(body)
    except SoapParseError as error:
        raise WsmanFault(BAD_REQUEST, str(error), "w:SchemaValidationError") from None
    if root.tag != f"{{{SOAP}}}Envelope":
        raise WsmanFault(
            BAD_REQUEST, "The request is not a SOAP 1.2 envelope.", "w:InvalidMessage"
        )
    header = root.find(f"{{{SOAP}}}Header")
    if header is None:
        raise WsmanFault(BAD_REQUEST, "The request has no SOAP header.")
    action = (header.findtext(f"{{{ADDRESSING}}}Action") or "").strip()
    shell_id = None
    for selector in header.iterfind(f"{{{WSMAN}}}SelectorSet/{{{WSMAN}}}Selector"):
        if selector.get("Name") == "ShellId" and selector.text:
            shell_id = selector.text.strip()
    timeout = _duration(header.findtext(f"{{{WSMAN}}}OperationTimeout"))
    try:
        envelope = int(header.findtext(f"{{{WSMAN}}}MaxEnvelopeSize") or 0)
    except ValueError:
        envelope = 0
    body_element = root.find(f"{{{SOAP}}}Body")
    payload = None
    if body_element is not None:
        payload = next((c for c in body_element if isinstance(c.tag, str)), None)
    return _Request(
        action=_short_action(action),
        message_id=(header.findtext(f"{{{ADDRESSING}}}MessageID") or "").strip()
        or None,
        resource_uri=(header.findtext(f"{{{WSMAN}}}ResourceURI") or "").strip(),
        shell_id=shell_id,
        timeout=min(timeout if timeout is not None else 20.0, MAX_WAIT),
        max_envelope=envelope or DEFAULT_ENVELOPE,
        body=payload,
    )


def _decode(text: str | None) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WsmanFault(BAD_REQUEST, "The stream data is not base64.") from None


def _refuse_dtd(data: bytes, tail: bytes) -> bytes:
    """Refuse PSRP messages that declare a DTD or entities; return the new tail.

    psrpcore parses each message with the standard library, which expands internal
    entities; the lab never lets such a document reach it.
    """
    window = (tail + data).upper()
    if b"<!DOCTYPE" in window or b"<!ENTITY" in window:
        raise WsmanFault(
            BAD_REQUEST, "A PSRP message declares a DTD, which the lab refuses."
        )
    return (tail + data)[-_GUARD_TAIL:]


@dataclass(eq=False)
class _Pipeline:
    """One pipeline (WSMan command) of a shell and what it has left to send."""

    command_id: str  # as the client wrote it
    server: ServerPipeline
    queue: deque[bytes] = field(default_factory=deque)
    queued: int = 0  # bytes in queue
    inputs: list[Any] = field(default_factory=list)
    input_closed: bool = False
    commands: Any = None  # the psrpcore commands once CreatePipeline arrived
    no_input: bool = True
    outputs: Iterator[Any] | None = None
    names: tuple[str, ...] = ()
    parameters: tuple[dict, ...] = ()
    errors: list[str] = field(default_factory=list)
    objects: int = 0
    started: float = 0.0
    finished: bool = False  # the final PipelineState is queued
    outcome: str = ""
    breaks: bool = False  # the scenario's fault_in names one of its commands
    held: bool = False  # the scenario's hold_in names one of its commands
    broken: bool = False  # it reached fault_after: the next Receive is a fault

    def error(self, error: LabError) -> None:
        self.errors.append(error.reason)
        record = error_record(error)
        self.server.write_error(
            record.Exception,
            record.CategoryInfo,
            record.TargetObject,
            record.FullyQualifiedErrorId,
        )

    def warning(self, message: str) -> None:
        self.server.write_warning(message)


class _Shell:
    """A runspace pool: psrpcore's state, its pipelines and the output queues."""

    def __init__(self, shell_id: str, endpoint: Endpoint, owner: str, budget: int):
        self.id = shell_id
        self.endpoint = endpoint
        self.owner = owner
        self.budget = budget  # raw bytes of fragments in one Receive response
        self.pool = ServerRunspacePool()
        self.runspace_id = uuid.uuid4()
        self.lock = threading.Condition()
        self.pipelines: dict[uuid.UUID, _Pipeline] = {}
        self.pool_queue: deque[bytes] = deque()
        self.tail = b""
        self.created = time.monotonic()


class ShellService:
    """Answers WSMan requests for /PowerShell and /wsman; holds no sockets.

    `record` receives one ShellCall per pipeline run, when it ends.
    """

    def __init__(
        self,
        organisation: ShellOrganisation,
        username: str,
        password: str,
        record: Callable[[ShellCall], None] | None = None,
    ) -> None:
        self.organisation = organisation
        self._username = username
        self._password = password.encode()
        self._record = record or (lambda call: None)
        self._shells: dict[str, _Shell] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        scenario = organisation.scenario
        self._faults = scenario.winrm
        self._realm = scenario.ews_host.replace('"', "").replace("\\", "")
        self._netbios = organisation.netbios
        self._machine = organisation.host_fqdn

    # HTTP --------------------------------------------------------------------

    def __call__(self, request: HttpRequest) -> Reply:
        endpoint = ENDPOINTS[request.path.rstrip("/").casefold()]
        if request.method != "POST":
            return Reply(405, b"", None, (("Allow", "POST"),))
        user = self._authenticate(request)
        started = time.monotonic()
        parsed: _Request | None = None
        try:
            parsed = _parse(request.body)
            if user is None:
                return self._unauthorized(parsed.action)
            reply = self._dispatch(endpoint, parsed, user, request)
        except WsmanFault as fault:
            if user is None:
                return self._unauthorized(parsed.action if parsed else None)
            reply = self._fault(parsed, fault)
        except Exception:
            logger.exception("lab WSMan failed on %s", request.path)
            if user is None:
                return self._unauthorized(parsed.action if parsed else None)
            reply = self._fault(
                parsed,
                WsmanFault(
                    INTERNAL_ERROR, "The simulated server failed on this request."
                ),
            )
        logger.debug(
            "WSMan %s %s shell=%s status=%s code=%s %.1f ms",
            endpoint.path,
            reply.operation,
            parsed.shell_id if parsed else None,
            reply.status,
            reply.response_code,
            (time.monotonic() - started) * 1000,
        )
        return reply

    def _authenticate(self, request: HttpRequest) -> str | None:
        """The user name when Basic credentials for the audit account are offered."""
        offered = basic_credentials(request)
        if offered is None or not self._is_account(offered[0]):
            return None
        user, password = offered
        if not hmac.compare_digest(password.encode(), self._password):
            return None
        return user

    def _is_account(self, user: str) -> bool:
        name = user.casefold()
        upn = self._username.casefold()
        if name == upn:
            return True
        domain, backslash, account = name.partition("\\")
        return (
            bool(backslash)
            and domain == self._netbios.casefold()
            and account == upn.partition("@")[0]
        )

    def _unauthorized(self, action: str | None) -> Reply:
        return Reply(
            401,
            b"",
            None,
            (("WWW-Authenticate", f'Basic realm="{self._realm}"'),),
            operation=action,
            response_code="401",
        )

    # WSMan -------------------------------------------------------------------

    def _dispatch(
        self, endpoint: Endpoint, request: _Request, user: str, http: HttpRequest
    ) -> Reply:
        action = request.action
        if action == "Create":
            body = self._create(endpoint, request, user, http)
        else:
            shell = self._shell(endpoint, request)
            if action == "Command":
                body = self._command(shell, request)
            elif action == "Send":
                body = self._send(shell, request)
            elif action == "Receive":
                try:
                    body = self._receive(shell, request)
                except _EntityBomb:
                    return Reply(200, ENTITY_BOMB, _CONTENT_TYPE, operation=action)
            elif action == "Signal":
                body = self._signal(shell, request)
            elif action == "Delete":
                body = self._delete(shell)
            elif action == "Get":
                body = [self._shell_element(shell, http)]
            else:
                raise WsmanFault(
                    ACTION_NOT_SUPPORTED,
                    f"The lab does not support the WS-Management action {action}.",
                    "a:ActionNotSupported",
                )
        reply_action = {
            "Create": f"{TRANSFER}/CreateResponse",
            "Delete": f"{TRANSFER}/DeleteResponse",
            "Get": f"{TRANSFER}/GetResponse",
        }.get(action, f"{SHELL}/{action}Response")
        payload = self._envelope(reply_action, request.message_id, body)
        return Reply(200, payload, _CONTENT_TYPE, operation=action, user=user)

    def _shell(self, endpoint: Endpoint, request: _Request) -> _Shell:
        with self._lock:
            shell = self._shells.get((request.shell_id or "").upper())
        if shell is None or shell.endpoint != endpoint:
            raise WsmanFault(
                SHELL_NOT_FOUND,
                f"The request for the Windows Remote Shell with ShellId "
                f"{request.shell_id} failed because the shell was not found on the "
                "server.",
                "w:InvalidSelectors",
            )
        return shell

    def _create(
        self, endpoint: Endpoint, request: _Request, user: str, http: HttpRequest
    ) -> list[etree._Element]:
        if request.resource_uri.casefold() != endpoint.resource_uri.casefold():
            raise WsmanFault(
                RESOURCE_NOT_FOUND,
                f"The WS-Management service cannot process the request. Cannot find "
                f"the {request.resource_uri.rpartition('/')[2]} session configuration "
                f"on {self._machine}; this endpoint serves {endpoint.configuration}.",
                "w:DestinationUnreachable",
            )
        body = request.body
        if body is None or body.tag != f"{{{SHELL}}}Shell":
            raise WsmanFault(BAD_REQUEST, "Create needs an rsp:Shell body.")
        creation = body.find(f"{{{POWERSHELL}}}creationXml")
        if creation is None:
            raise WsmanFault(BAD_REQUEST, "Create needs a creationXml element.")
        shell_id = (body.get("ShellId") or str(uuid.uuid4())).upper()
        budget = max(4096, (request.max_envelope - _ENVELOPE_OVERHEAD) * 3 // 4)
        shell = _Shell(shell_id, endpoint, user, budget)
        with shell.lock:
            self._feed(shell, _decode(creation.text), None)
            self._drain(shell)
            if shell.pool.state != RunspacePoolState.Opened:
                raise WsmanFault(
                    BAD_REQUEST, "The creationXml did not open a runspace pool."
                )
        with self._lock:
            self._shells[shell_id] = shell
        logger.debug("shell %s opened on %s", shell_id, endpoint.path)
        created = etree.Element(f"{{{TRANSFER}}}ResourceCreated", nsmap=_NSMAP)
        _add(created, f"{{{ADDRESSING}}}Address", self._address(endpoint, http))
        reference = _add(created, f"{{{ADDRESSING}}}ReferenceParameters")
        _add(reference, f"{{{WSMAN}}}ResourceURI", endpoint.resource_uri)
        selectors = _add(reference, f"{{{WSMAN}}}SelectorSet")
        _add(selectors, f"{{{WSMAN}}}Selector", shell_id, Name="ShellId")
        return [created, self._shell_element(shell, http)]

    def _address(self, endpoint: Endpoint, http: HttpRequest) -> str:
        host = http.headers.get("Host") or ""
        if not _HOST_HEADER.match(host):
            host = self.organisation.scenario.ews_host
        return f"https://{host}{endpoint.path}"

    def _shell_element(self, shell: _Shell, http: HttpRequest) -> etree._Element:
        element = etree.Element(f"{{{SHELL}}}Shell", nsmap=_NSMAP)
        age = int(time.monotonic() - shell.created)
        for name, value in (
            ("ShellId", shell.id),
            ("Name", "Runspace1"),
            ("ResourceUri", shell.endpoint.resource_uri),
            ("Owner", shell.owner),
            ("IdleTimeOut", "PT900.000S"),
            ("InputStreams", "stdin pr"),
            ("OutputStreams", "stdout"),
            ("State", "Connected"),
            ("ShellRunTime", f"P0DT0H0M{age}S"),
            ("ShellInactivity", "P0DT0H0M0S"),
        ):
            _add(element, f"{{{SHELL}}}{name}", value)
        return element

    def _command(self, shell: _Shell, request: _Request) -> list[etree._Element]:
        body = request.body
        if body is None or body.tag != f"{{{SHELL}}}CommandLine":
            raise WsmanFault(BAD_REQUEST, "Command needs an rsp:CommandLine body.")
        command_id = body.get("CommandId") or str(uuid.uuid4()).upper()
        try:
            pipeline_id = uuid.UUID(command_id)
        except ValueError:
            raise WsmanFault(BAD_REQUEST, "The CommandId is not a GUID.") from None
        data = b"".join(_decode(a.text) for a in body.iterfind(f"{{{SHELL}}}Arguments"))
        with shell.lock:
            if pipeline_id in shell.pipelines:
                raise WsmanFault(BAD_REQUEST, "That CommandId is already running.")
            # psrpcore routes the CreatePipeline message to a pipeline that must
            # already exist.
            pipeline = _Pipeline(command_id, ServerPipeline(shell.pool, pipeline_id))
            shell.pipelines[pipeline_id] = pipeline
            self._feed(shell, data, pipeline)
            self._drain(shell)
        response = etree.Element(f"{{{SHELL}}}CommandResponse", nsmap=_NSMAP)
        _add(response, f"{{{SHELL}}}CommandId", command_id)
        return [response]

    def _send(self, shell: _Shell, request: _Request) -> list[etree._Element]:
        body = request.body
        if body is None or body.tag != f"{{{SHELL}}}Send":
            raise WsmanFault(BAD_REQUEST, "Send needs an rsp:Send body.")
        with shell.lock:
            for stream in body.iterfind(f"{{{SHELL}}}Stream"):
                command_id = stream.get("CommandId")
                pipeline = self._pipeline(shell, command_id) if command_id else None
                self._feed(shell, _decode(stream.text), pipeline)
            self._drain(shell)
            shell.lock.notify_all()
        return [etree.Element(f"{{{SHELL}}}SendResponse", nsmap=_NSMAP)]

    def _pipeline(self, shell: _Shell, command_id: str) -> _Pipeline:
        try:
            pipeline = shell.pipelines.get(uuid.UUID(command_id))
        except ValueError:
            pipeline = None
        if pipeline is None:
            raise WsmanFault(
                SHELL_NOT_FOUND,
                f"The Windows Remote Shell received a request for command "
                f"{command_id}, which does not exist in shell {shell.id}.",
                "w:InvalidSelectors",
            )
        return pipeline

    def _receive(self, shell: _Shell, request: _Request) -> list[etree._Element]:
        body = request.body
        desired = None if body is None else body.find(f"{{{SHELL}}}DesiredStream")
        command_id = desired.get("CommandId") if desired is not None else None
        deadline = time.monotonic() + request.timeout
        with shell.lock:
            if command_id is None:
                queue = shell.pool_queue
                pipeline = None
            else:
                pipeline = self._pipeline(shell, command_id)
                queue = pipeline.queue
                if pipeline.held:
                    self._hold(shell, pipeline)
            while True:
                if pipeline is not None:
                    self._pump(shell, pipeline)
                self._drain(shell)
                if queue or (pipeline is not None and pipeline.finished):
                    break
                if pipeline is not None and pipeline.broken:
                    self._finish(shell, pipeline, "Faulted")
                    self._forget(shell, pipeline)
                    if self._faults.fault_kind == "doctype":
                        raise _EntityBomb()
                    raise WsmanFault(
                        INTERNAL_ERROR,
                        "The WSMan provider host process did not return a proper "
                        "response. A provider in the host process may have behaved "
                        "improperly.",
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WsmanFault(
                        OPERATION_TIMEOUT,
                        "The WS-Management service cannot complete the operation "
                        "within the time specified in OperationTimeout.",
                        "w:TimedOut",
                    )
                shell.lock.wait(remaining)
            chunks: list[bytes] = []
            size = 0
            while queue and (not chunks or size + len(queue[0]) <= shell.budget):
                chunk = queue.popleft()
                chunks.append(chunk)
                size += len(chunk)
            done = False
            if pipeline is not None:
                pipeline.queued -= size
                done = pipeline.finished and not pipeline.queue
                if done:
                    self._forget(shell, pipeline)
        response = etree.Element(f"{{{SHELL}}}ReceiveResponse", nsmap=_NSMAP)
        if chunks:
            attributes = {"Name": "stdout"}
            if command_id is not None:
                attributes["CommandId"] = command_id
            stream = _add(response, f"{{{SHELL}}}Stream", **attributes)
            stream.text = base64.b64encode(b"".join(chunks)).decode("ascii")
        if command_id is not None:
            _add(
                response,
                f"{{{SHELL}}}CommandState",
                CommandId=command_id,
                State=_COMMAND_DONE if done else _COMMAND_RUNNING,
            )
        return [response]

    def _hold(self, shell: _Shell, pipeline: _Pipeline) -> None:
        """Never answer this Receive: wait (with the shell's lock released) until the
        lab stops or the shell is deleted, then fault, as a closed shell would."""
        logger.debug(
            "shell %s: holding a Receive for %s", shell.id, " | ".join(pipeline.names)
        )
        while not self._closed.is_set() and self._shells.get(shell.id) is shell:
            shell.lock.wait(1.0)
        raise WsmanFault(
            SHELL_NOT_FOUND,
            f"The shell {shell.id} was closed while a Receive was held.",
            "w:InvalidSelectors",
        )

    def _signal(self, shell: _Shell, request: _Request) -> list[etree._Element]:
        body = request.body
        if body is None or body.tag != f"{{{SHELL}}}Signal":
            raise WsmanFault(BAD_REQUEST, "Signal needs an rsp:Signal body.")
        command_id = body.get("CommandId") or ""
        code = (body.findtext(f"{{{SHELL}}}Code") or "").strip()
        with shell.lock:
            try:
                pipeline = shell.pipelines.get(uuid.UUID(command_id))
            except ValueError:
                pipeline = None
            if pipeline is not None:
                # Terminate (pypsrp's close) and ctrl_c (its stop) both end the
                # pipeline here: pypsrp reads nothing more from a signalled one.
                logger.debug("shell %s: signal %s for %s", shell.id, code, command_id)
                if pipeline.commands is not None and not pipeline.finished:
                    self._finish(shell, pipeline, "Stopped")
                self._forget(shell, pipeline)
        response = etree.Element(f"{{{SHELL}}}SignalResponse", nsmap=_NSMAP)
        return [response]

    def _delete(self, shell: _Shell) -> list[etree._Element]:
        with self._lock:
            self._shells.pop(shell.id, None)
        with shell.lock:
            for pipeline in list(shell.pipelines.values()):
                if pipeline.commands is not None and not pipeline.finished:
                    self._finish(shell, pipeline, "Stopped")
                self._forget(shell, pipeline)
            shell.pool_queue.clear()
            shell.lock.notify_all()
        logger.debug("shell %s closed", shell.id)
        return []

    def close(self) -> None:
        """Forget every shell (the lab is stopping), and release held Receives."""
        self._closed.set()
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            with shell.lock:
                shell.pipelines.clear()
                shell.lock.notify_all()

    # PSRP --------------------------------------------------------------------

    def _feed(self, shell: _Shell, data: bytes, pipeline: _Pipeline | None) -> None:
        """Hand received fragments to psrpcore and act on the events they complete."""
        if not data:
            return
        shell.tail = _refuse_dtd(data, shell.tail)
        target = pipeline.server.pipeline_id if pipeline is not None else None
        shell.pool.receive_data(PSRPPayload(data, StreamType.default, target))
        while True:
            event = shell.pool.next_event()
            if event is None:
                break
            self._event(shell, event)

    def _event(self, shell: _Shell, event: Any) -> None:
        pool = shell.pool
        if isinstance(event, CreatePipelineEvent):
            pipeline = shell.pipelines[event.pipeline_id]
            pipeline.commands = list(event.pipeline.commands)
            pipeline.no_input = bool(event.pipeline.no_input)
            if pipeline.no_input or pipeline.input_closed:
                self._start(shell, pipeline)
        elif isinstance(event, PipelineInputEvent):
            pipeline = shell.pipelines[event.pipeline_id]
            pipeline.inputs.append(from_psobject(event.data))
        elif isinstance(event, EndOfPipelineInputEvent):
            pipeline = shell.pipelines[event.pipeline_id]
            pipeline.input_closed = True
            if pipeline.commands is not None and pipeline.outputs is None:
                self._start(shell, pipeline)
        elif isinstance(event, GetCommandMetadataEvent):
            pipeline = shell.pipelines[event.pipeline_id]
            pipeline.commands = []
            pipeline.names = ("<GetCommandMetadata>",)
            pipeline.started = time.monotonic()
            pipeline.server.start()
            self._fail(
                shell,
                pipeline,
                LabError(
                    message="The lab does not answer command metadata requests.",
                    exception=(
                        "System.NotSupportedException",
                        "System.SystemException",
                    ),
                    reason="NotSupportedException",
                    error_id="GetCommandMetadataNotSupported",
                ),
            )
        elif isinstance(
            event, (SetMaxRunspacesEvent, SetMinRunspacesEvent, ResetRunspaceStateEvent)
        ):
            pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, GetAvailableRunspacesEvent):
            pool.runspace_availability_response(event.ci, 1)

    def _start(self, shell: _Shell, pipeline: _Pipeline) -> None:
        pipeline.started = time.monotonic()
        pipeline.server.start()
        commands = pipeline.commands or []
        inputs = None if pipeline.no_input else pipeline.inputs
        try:
            run = self.organisation.open_pipeline(
                shell.endpoint.path, commands, inputs, pipeline, shell.runspace_id
            )
        except CmdletError as error:
            pipeline.names = command_names(commands)
            pipeline.parameters = tuple(parameters_of(c) for c in commands)
            self._fail(shell, pipeline, error.error)
            return
        pipeline.names = run.commands
        pipeline.parameters = run.parameters
        pipeline.outputs = run.outputs
        named = {n.casefold() for n in run.commands}
        pipeline.breaks = self._faults.fault_in.casefold() in named
        pipeline.held = self._faults.hold_in.casefold() in named
        logger.debug(
            "shell %s: pipeline %s started: %s",
            shell.id,
            pipeline.command_id,
            " | ".join(run.commands),
        )

    def _pump(self, shell: _Shell, pipeline: _Pipeline) -> None:
        """Run the pipeline until about one Receive response of output is queued."""
        while (
            pipeline.outputs is not None
            and not pipeline.finished
            and not pipeline.broken
            and pipeline.queued < shell.budget
        ):
            if pipeline.breaks and pipeline.objects >= self._faults.fault_after:
                if self._faults.fault_kind == "psrp":
                    name = pipeline.names[-1] if pipeline.names else "the pipeline"
                    self._fail(
                        shell,
                        pipeline,
                        internal_error(name, "the scenario breaks this pipeline"),
                    )
                else:
                    pipeline.broken = True  # the next Receive answers a fault
                break
            try:
                item = next(pipeline.outputs)
            except StopIteration:
                self._finish(shell, pipeline, "Completed")
            except CmdletError as error:
                self._fail(shell, pipeline, error.error)
            except Exception as error:
                logger.exception("lab cmdlet failed in %s", " | ".join(pipeline.names))
                name = pipeline.names[-1] if pipeline.names else "the pipeline"
                self._fail(shell, pipeline, internal_error(name, repr(error)))
            else:
                pipeline.objects += 1
                pipeline.server.write_output(to_psobject(item))
            self._drain(shell)

    def _fail(self, shell: _Shell, pipeline: _Pipeline, error: LabError) -> None:
        """End a pipeline Failed with a terminating error record.

        psrpcore 0.3 has no public call for this: the PipelineState message is
        queued by hand and the pipeline's state set to match.
        """
        pipeline.errors.append(error.reason)
        state = PipelineState(
            PipelineState=int(PSInvocationState.Failed),
            ExceptionAsErrorRecord=error_record(error),
        )
        pipeline.server.prepare_message(state)
        pipeline.server.state = PSInvocationState.Failed
        self._finish(shell, pipeline, "Failed")

    def _finish(self, shell: _Shell, pipeline: _Pipeline, outcome: str) -> None:
        if outcome == "Completed":
            pipeline.server.complete()
        pipeline.finished = True
        pipeline.outcome = outcome
        pipeline.outputs = None
        self._drain(shell)
        call = ShellCall(
            endpoint=shell.endpoint.path,
            commands=pipeline.names,
            parameters=pipeline.parameters,
            outcome=outcome,
            errors=tuple(pipeline.errors),
        )
        self._record(call)
        logger.debug(
            "shell %s: pipeline %s on %s: %s -> %s, %d objects, %d errors, %.1f ms",
            shell.id,
            pipeline.command_id,
            shell.endpoint.path,
            " | ".join(pipeline.names),
            outcome,
            pipeline.objects,
            len(pipeline.errors),
            (time.monotonic() - pipeline.started) * 1000,
        )
        shell.lock.notify_all()

    def _forget(self, shell: _Shell, pipeline: _Pipeline) -> None:
        shell.pipelines.pop(pipeline.server.pipeline_id, None)
        shell.pool.pipeline_table.pop(pipeline.server.pipeline_id, None)

    def _drain(self, shell: _Shell) -> None:
        """Move psrpcore's pending output into the queue of the pipeline it is for."""
        while True:
            payload = shell.pool.data_to_send(shell.budget)
            if payload is None:
                break
            if payload.pipeline_id is None:
                shell.pool_queue.append(payload.data)
                continue
            pipeline = shell.pipelines.get(payload.pipeline_id)
            if pipeline is not None:
                pipeline.queue.append(payload.data)
                pipeline.queued += len(payload.data)
        shell.lock.notify_all()

    # SOAP --------------------------------------------------------------------

    def _envelope(
        self, action: str, relates_to: str | None, body: list[etree._Element]
    ) -> bytes:
        root = etree.Element(f"{{{SOAP}}}Envelope", nsmap=_NSMAP)
        header = _add(root, f"{{{SOAP}}}Header")
        _add(header, f"{{{ADDRESSING}}}To", _ANONYMOUS)
        _add(header, f"{{{ADDRESSING}}}Action", action)
        _add(header, f"{{{ADDRESSING}}}MessageID", f"uuid:{str(uuid.uuid4()).upper()}")
        if relates_to:
            _add(header, f"{{{ADDRESSING}}}RelatesTo", relates_to)
        content = _add(root, f"{{{SOAP}}}Body")
        content.extend(body)
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")

    def _fault(self, request: _Request | None, fault: WsmanFault) -> Reply:
        element = etree.Element(f"{{{SOAP}}}Fault", nsmap=_NSMAP)
        code = _add(element, f"{{{SOAP}}}Code")
        _add(code, f"{{{SOAP}}}Value", "s:Receiver")
        subcode = _add(code, f"{{{SOAP}}}Subcode")
        _add(subcode, f"{{{SOAP}}}Value", fault.subcode)
        reason = _add(element, f"{{{SOAP}}}Reason")
        text = _add(reason, f"{{{SOAP}}}Text", fault.message)
        text.set(_XML_LANG, "en-US")
        detail = _add(element, f"{{{SOAP}}}Detail")
        wsman_fault = etree.SubElement(
            detail,
            f"{{{FAULT}}}WSManFault",
            {"Code": str(fault.code), "Machine": self._machine},
            nsmap={"f": FAULT},
        )
        _add(wsman_fault, f"{{{FAULT}}}Message", fault.message)
        body = self._envelope(
            "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
            request.message_id if request else None,
            [element],
        )
        return Reply(
            500,
            body,
            _CONTENT_TYPE,
            operation=request.action if request else None,
            response_code=str(fault.code),
        )


def _add(
    parent: etree._Element, tag: str, text: object = None, **attributes: str
) -> etree._Element:
    child = etree.SubElement(parent, tag, attributes)
    if text is not None:
        child.text = str(text)
    return child
