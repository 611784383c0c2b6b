"""The lab's Exchange front end: EWS, OWA, ECP and autodiscover over HTTPS on loopback.

Real, unmodified clients (exchangelib, requests) talk to it over TLS on 127.0.0.1 and an
ephemeral port, naming the scenario's EWS host in SNI and Host. It behaves like IIS in
front of Exchange where the audit can tell the difference: 401 with one WWW-Authenticate
header per offered scheme, HTTP/1.1 keep-alive with Content-Length on every answer, SOAP
faults as HTTP 500, OWA and ECP redirecting to a forms logon page.

Three layers, each replaceable on its own:
- `EwsService.answer` turns one parsed HTTP request into a `Reply` (routing,
  authentication, throttling, SOAP); it touches no socket and is where content knobs
  (HTML instead of SOAP, oversized bodies) belong;
- `_Handler._deliver` writes a `Reply` to the connection: the one place for transport
  knobs (latency, black hole, slow drip, reset);
The scenario's `hostile` knob picks one such behaviour for signed-in EWS requests
(lab/ews_hostile.py has the spoilt bodies); `Reply.hostile` carries it from the first
layer to the second and `LabRequest.hostile` into the log.
- `EwsServer` owns the listening socket, the TLS handshake (in the worker thread, so a
  client that stalls the handshake blocks nobody) and the open connections.
Each request ends as one `LabRequest` handed to the `record` callback.

PowerShell remoting (POST /PowerShell and /wsman) shares the server, as on a real
Exchange server where IIS hosts both; those paths go to the `shell` handler the server
is given (lab/winrm.py), and are 404 without one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import re
import select
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Self
from urllib.parse import parse_qs, quote, urlsplit

from lab import ews_hostile, ews_pages
from lab.ews_hostile import TRANSPORT_BEHAVIOURS, LargeBody
from lab.ews_operations import EwsFault, Organisation, named_mailboxes
from lab.ews_soap import (
    MAX_REQUEST_BYTES,
    ServerVersion,
    SoapParseError,
    SoapRequest,
    envelope,
    fault,
    parse_request,
    parse_xml,
)
from lab.pki import ServerCredentials
from lab.scenario import Scenario

logger = logging.getLogger(__name__)

EWS_PATH = "/EWS/Exchange.asmx"
SHELL_PATHS = ("/powershell", "/wsman")  # casefolded, without a trailing slash
HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to finish the TLS handshake
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may sit idle
DRIP_INTERVAL = 1.0  # seconds between the bytes of a slow_drip answer

_SOAP_TYPE = "text/xml; charset=utf-8"
_HTML_TYPE = "text/html; charset=utf-8"
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

# EWS schema names in the order Exchange learnt them; a server refuses newer ones.
_SCHEMAS = (
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2016",
)
_DATED_SCHEMA = re.compile(r"^V20[0-9]{2}_[0-9]{2}_[0-9]{2}$")


@dataclass(frozen=True)
class LabRequest:
    """One HTTP request the lab received, as tests and the audit's own tests see it."""

    method: str
    path: str
    operation: str | None  # the SOAP body's first element, e.g. "GetFolder"
    mailboxes: tuple[str, ...]  # target addresses named in the request
    impersonated: str | None  # address from the ExchangeImpersonation header
    user: str | None  # authenticated user; None when not authenticated
    status: int  # HTTP status sent
    response_code: str | None  # EWS ResponseCode or fault code sent
    hostile: str | None = None  # the scenario's hostile behaviour, when applied


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # without the query string
    query: str
    headers: Message
    body: bytes


@dataclass(frozen=True)
class Reply:
    """What to send back, and what the log should say about it."""

    status: int
    body: bytes | LargeBody = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    operation: str | None = None
    mailboxes: tuple[str, ...] = ()
    impersonated: str | None = None
    user: str | None = None
    response_code: str | None = None
    hostile: str | None = None


ShellHandler = Callable[[HttpRequest], Reply]


def basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """(user, password) from a well-formed Basic Authorization header, else None."""
    header = request.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.casefold() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else None


class EwsService:
    """Answers HTTP requests for one scenario; holds no sockets."""

    def __init__(
        self,
        scenario: Scenario,
        password: str,
        base_url: str,
        shell: ShellHandler | None = None,
    ) -> None:
        self.scenario = scenario
        self.base_url = base_url
        self._shell = shell
        self._password = password.encode()
        self._version = ServerVersion.parse(
            scenario.server_version, scenario.schema_version
        )
        self._organisation = Organisation(scenario)
        self._busy_left = scenario.busy_first_calls
        self._busy_lock = threading.Lock()
        self._signed_in_requests = 0
        self._schemes = {
            s.split()[0].casefold() for s in scenario.auth_schemes if s.strip()
        }

    def answer(self, request: HttpRequest) -> Reply:
        path = request.path.casefold()
        if self._shell is not None and path.rstrip("/") in SHELL_PATHS:
            return self._shell(request)
        if path == EWS_PATH.casefold():
            if request.method == "POST":
                return self._soap(request)
            if request.method in ("GET", "HEAD"):
                return self._service_page(request)
            return _html(405, ews_pages.method_not_allowed_page())
        if path == "/ews/services.wsdl" and request.method in ("GET", "HEAD"):
            body = ews_pages.wsdl(
                self.base_url + EWS_PATH, self._organisation.operations
            )
            return Reply(200, body, _SOAP_TYPE)
        if path == "/autodiscover/autodiscover.xml":
            return self._autodiscover(request)
        if path in ("/owa", "/owa/"):
            return self._to_logon(request, "/owa/")
        if path in ("/ecp", "/ecp/"):
            return self._to_logon(request, "/ecp/")
        if path == "/owa/auth/logon.aspx":
            destination = parse_qs(request.query).get("url", [""])[0]
            return _html(200, ews_pages.owa_logon_page(destination))
        return _html(404, ews_pages.not_found_page())

    def internal_error(self) -> Reply:
        """The answer when the lab itself failed: a fault, never a dropped socket."""
        return self._fault(
            "ErrorInternalServerError", "The simulated server failed on this request."
        )

    # EWS ---------------------------------------------------------------------

    def _soap(self, request: HttpRequest) -> Reply:
        user = self._authenticate(request)
        try:
            soap: SoapRequest | None = parse_request(request.body)
        except SoapParseError as error:
            logger.debug("unreadable SOAP request: %s", error)
            soap = None

        if user is None:
            reply = self._anonymous(self._unauthorized())
        elif soap is None:
            reply = self._fault("ErrorSchemaValidation", "The request is not valid.")
        else:
            reply = self._operation(soap)
        if user is not None:
            behaviour = self._hostile_turn()
            if behaviour:
                reply = self._spoil(reply, behaviour)

        if soap is None:
            return replace(reply, user=user)
        impersonation = soap.impersonation
        return replace(
            reply,
            operation=soap.operation,
            mailboxes=named_mailboxes(soap.payload),
            impersonated=impersonation.address if impersonation else None,
            user=user,
        )

    def _operation(self, soap: SoapRequest) -> Reply:
        if self._take_busy_slot():
            return self._fault(
                "ErrorServerBusy",
                "The server is busy; try again after the back-off time.",
                {"BackOffMilliseconds": str(self.scenario.busy_back_off_ms)},
            )
        refusal = self._version_refusal(soap.requested_version)
        if refusal is not None:
            return refusal
        try:
            caller = self._organisation.caller_for(soap.impersonation)
            outcome = self._organisation.answer(soap, caller)
        except EwsFault as error:
            return self._fault(error.code, error.message, error.values)
        body = envelope(self._version, outcome.content)
        return Reply(200, body, _SOAP_TYPE, response_code=outcome.response_code)

    def _anonymous(self, reply: Reply) -> Reply:
        """An EWS answer to a request without credentials, spoilt when the scenario
        says hostile_anonymous (a transport behaviour, so the body stays)."""
        if self.scenario.hostile_anonymous and self.scenario.hostile:
            return replace(reply, hostile=self.scenario.hostile)
        return reply

    def _hostile_turn(self) -> str | None:
        """The hostile behaviour for this signed-in request, if it is in the window."""
        scenario = self.scenario
        if not scenario.hostile:
            return None
        with self._busy_lock:
            self._signed_in_requests += 1
            turn = self._signed_in_requests
        if turn <= scenario.hostile_after:
            return None
        if (
            scenario.hostile_requests
            and turn > scenario.hostile_after + scenario.hostile_requests
        ):
            return None
        return scenario.hostile

    def _spoil(self, reply: Reply, behaviour: str) -> Reply:
        """The answer as the hostile front end sends it."""
        reply = replace(reply, hostile=behaviour)
        if behaviour in TRANSPORT_BEHAVIOURS:
            return reply  # _deliver applies it
        if behaviour == "http_503":
            seconds = max(1, math.ceil(self.scenario.busy_back_off_ms / 1000))
            return replace(
                reply,
                status=503,
                body=ews_hostile.unavailable_page(),
                content_type=_HTML_TYPE,
                headers=(("Retry-After", str(seconds)),),
                response_code=None,
            )
        if behaviour == "html_page":
            return replace(
                reply,
                status=500,
                body=ews_hostile.error_page(),
                content_type=_HTML_TYPE,
                response_code=None,
            )
        if behaviour == "empty_body":
            return replace(reply, status=200, body=b"", response_code=None)
        assert isinstance(reply.body, bytes)
        if behaviour == "invalid_xml":
            body: bytes | LargeBody = ews_hostile.cut_off(reply.body)
        elif behaviour == "huge_body":
            size = self.scenario.hostile_body_mb * 1024 * 1024
            body = ews_hostile.padded(reply.body, size)
        elif behaviour == "entity_expansion":
            body = ews_hostile.with_entity_bomb(reply.body)
        elif behaviour == "external_entity":
            body = ews_hostile.with_external_entities(
                reply.body, self.scenario.hostile_entity_url
            )
        else:
            raise ValueError(f"unknown hostile behaviour {behaviour!r}")
        return replace(reply, body=body)

    def _take_busy_slot(self) -> bool:
        with self._busy_lock:
            if self._busy_left <= 0:
                return False
            self._busy_left -= 1
            return True

    def _version_refusal(self, requested: str | None) -> Reply | None:
        """A fault when the request asks for a schema this server does not speak."""
        if requested is None:
            return None
        newest = self._newest_schema()
        if requested in _SCHEMAS:
            if _SCHEMAS.index(requested) <= _SCHEMAS.index(newest):
                return None
            return self._fault(
                "ErrorInvalidServerVersion",
                "The requested schema version is newer than this server.",
            )
        if _DATED_SCHEMA.match(requested) and newest == "Exchange2016":
            return None
        return self._fault("ErrorInvalidRequest", "The requested schema is unknown.")

    def _newest_schema(self) -> str:
        version = self._version
        if (version.major, version.minor) >= (15, 1):
            return "Exchange2016"
        if version.major == 15:
            return "Exchange2013_SP1" if version.major_build >= 847 else "Exchange2013"
        if version.major == 14:
            return _SCHEMAS[2 + min(version.minor, 2)]
        return "Exchange2007_SP1"

    def _fault(
        self, code: str, message: str, values: dict[str, str] | None = None
    ) -> Reply:
        body = envelope(self._version, fault(code, message, values))
        return Reply(500, body, _SOAP_TYPE, response_code=code)

    # Authentication -----------------------------------------------------------

    def _authenticate(self, request: HttpRequest) -> str | None:
        """The user name when Basic credentials are offered and right, else None.

        Only the service account signs in. The lab does not implement NTLM or
        Negotiate: it lists them when the scenario offers them and answers any
        attempt with another 401.
        """
        offered = basic_credentials(request)
        if offered is None or "basic" not in self._schemes:
            return None
        user, password = offered
        if self.scenario.reject_password:
            return None
        if not self._is_service_account(user):
            return None
        if not hmac.compare_digest(password.encode(), self._password):
            return None
        return user

    def _is_service_account(self, user: str) -> bool:
        upn = self.scenario.service_upn.casefold()
        name = user.casefold()
        if name == upn:
            return True
        # DOMAIN\name, where name is the UPN's local part (the sAMAccountName here).
        domain, backslash, account = name.partition("\\")
        return bool(backslash and domain) and account == upn.partition("@")[0]

    def _unauthorized(self) -> Reply:
        challenges = []
        for scheme in self.scenario.auth_schemes:
            if scheme.casefold() == "basic":
                realm = self.scenario.ews_host.replace('"', "").replace("\\", "")
                challenges.append(f'Basic realm="{realm}"')
            else:
                challenges.append(scheme)
        headers = tuple(("WWW-Authenticate", c) for c in challenges)
        return Reply(401, ews_pages.unauthorized_page(), _HTML_TYPE, headers)

    # Other pages --------------------------------------------------------------

    def _service_page(self, request: HttpRequest) -> Reply:
        user = self._authenticate(request)
        if user is None:
            return self._anonymous(self._unauthorized())
        page = ews_pages.ews_service_page(self.base_url + "/EWS/Services.wsdl")
        return replace(_html(200, page), user=user)

    def _autodiscover(self, request: HttpRequest) -> Reply:
        user = self._authenticate(request)
        if user is None:
            return self._unauthorized()
        address = _requested_address(request.body) if request.method == "POST" else None
        if address is None:
            body = ews_pages.autodiscover_error("600", "Invalid Request")
            return Reply(200, body, _SOAP_TYPE, user=user)
        mailbox = self._organisation.find(address)
        if mailbox is None:
            body = ews_pages.autodiscover_error("500", "No mailbox has this address.")
        else:
            body = ews_pages.autodiscover_settings(mailbox, self.base_url + EWS_PATH)
        return Reply(200, body, _SOAP_TYPE, mailboxes=(address,), user=user)

    def _to_logon(self, request: HttpRequest, application: str) -> Reply:
        """OWA and ECP send browsers to the forms logon page, as Exchange does."""
        host = request.headers.get("Host") or ""
        origin = f"https://{host}" if _HOST_HEADER.match(host) else self.base_url
        destination = quote(origin + application, safe="")
        location = f"{origin}/owa/auth/logon.aspx?url={destination}&reason=0"
        page = ews_pages.html_page("Object moved", "The page has moved.")
        return Reply(302, page, _HTML_TYPE, (("Location", location),))


def _requested_address(body: bytes) -> str | None:
    """The EMailAddress of a POX autodiscover request, if it names one."""
    try:
        root = parse_xml(body)
    except SoapParseError:
        return None
    for element in root.iter("{*}EMailAddress"):
        if element.text and element.text.strip():
            return element.text.strip()
    return None


def _html(status: int, body: bytes) -> Reply:
    return Reply(status, body, _HTML_TYPE)


def _header_safe(value: str) -> str:
    """Drop characters that could end or split a header line."""
    return "".join(ch for ch in value if ch.isprintable())


class _Handler(BaseHTTPRequestHandler):
    """One kept-alive HTTPS connection; each request goes through `_handle`."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    timeout = IDLE_TIMEOUT
    server: _TlsServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:
        """Silence http.server's stderr line; `_handle` logs each request itself."""

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_GET

    def _handle(self) -> None:
        started = time.monotonic()
        target = urlsplit(self.path)
        service = self.server.service
        try:
            body = self._read_body()
        except ValueError as error:
            # The framing is broken, so the connection cannot carry another request.
            logger.debug("unreadable request body: %s", error)
            self.close_connection = True
            reply = replace(
                _html(400, ews_pages.bad_request_page()),
                headers=(("Connection", "close"),),
            )
        else:
            if body is None:
                reply = _html(413, ews_pages.too_large_page())
            else:
                request = HttpRequest(
                    self.command, target.path, target.query, self.headers, body
                )
                try:
                    reply = service.answer(request)
                except Exception:
                    logger.exception(
                        "lab EWS failed on %s %s", self.command, target.path
                    )
                    reply = service.internal_error()

        # Recorded before the answer leaves, so a client that has its answer always
        # finds the request in the log.
        self.server.record(
            LabRequest(
                method=self.command,
                path=target.path,
                operation=reply.operation,
                mailboxes=reply.mailboxes,
                impersonated=reply.impersonated,
                user=reply.user,
                status=reply.status,
                response_code=reply.response_code,
                hostile=reply.hostile,
            )
        )
        self._deliver(reply)
        logger.debug(
            "%s %s operation=%s status=%s code=%s %.1f ms",
            self.command,
            target.path,
            reply.operation,
            reply.status,
            reply.response_code,
            (time.monotonic() - started) * 1000,
        )

    def _read_body(self) -> bytes | None:
        """The whole request body, read even when the answer will be 401.

        Returns None, after reading and dropping the body, when it is too large.
        """
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").casefold():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_REQUEST_BYTES:
            self._discard(length)
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        parts = []
        size = 0
        while True:
            # A missing or non-hex size line raises ValueError: broken framing.
            chunk_size = int(self.rfile.readline(1024).split(b";")[0], 16)
            if chunk_size == 0:
                break
            size += chunk_size
            if size > MAX_REQUEST_BYTES:
                self._discard(chunk_size)
            else:
                parts.append(self.rfile.read(chunk_size))
            self.rfile.readline(1024)  # the line end after the chunk
        while self.rfile.readline(1024).strip():
            pass  # trailer fields
        return None if size > MAX_REQUEST_BYTES else b"".join(parts)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _deliver(self, reply: Reply) -> None:
        """Write `reply`: status line, headers with Content-Length, body.

        The one place for transport behaviour. Only an answer to a request whose
        framing was broken says `Connection: close`: exchangelib reads that header
        on an error answer as a busy server.
        """
        if reply.hostile == "black_hole":
            self._hold()
            return
        self.send_response(reply.status)
        self.send_header("X-Powered-By", "ASP.NET")
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, _header_safe(value))
        self.send_header("Content-Length", str(len(reply.body)))
        # End the header block by hand so that it leaves in the same write as the body.
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        if self.command == "HEAD":
            self.wfile.write(head)
        elif isinstance(reply.body, LargeBody):
            self._write_large(head, reply.body)
        elif reply.hostile == "slow_drip":
            self._drip(head + reply.body)
        elif reply.hostile == "reset_mid_body":
            self._reset(head + reply.body[: len(reply.body) // 2])
        else:
            self.wfile.write(head + reply.body)
        self.wfile.flush()

    def _hold(self) -> None:
        """Black hole: say nothing until the client or the lab gives up."""
        self.close_connection = True
        connection = self.connection
        while not self.server.stopping.is_set():
            readable, _, _ = select.select([connection], [], [], 0.2)
            if not readable:
                continue
            try:
                connection.settimeout(0.2)
                if not connection.recv(4096):
                    return  # the client closed the connection
            except TimeoutError:
                continue
            except OSError:
                return

    def _drip(self, data: bytes) -> None:
        """Slow drip: one byte every DRIP_INTERVAL until done or the client leaves."""
        self.close_connection = True
        for index in range(len(data)):
            if index and self.server.stopping.wait(DRIP_INTERVAL):
                return
            try:
                self.wfile.write(data[index : index + 1])
            except OSError:
                return

    def _reset(self, data: bytes) -> None:
        """Send data, then a TCP reset: linger 0 makes close() send RST, not FIN."""
        self.close_connection = True
        try:
            self.wfile.write(data)
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError:
            return
        self.connection.close()

    def _write_large(self, head: bytes, body: LargeBody) -> None:
        """A large body in chunks, until done or the client stops reading."""
        try:
            self.wfile.write(head)
            for chunk in body.chunks():
                if self.server.stopping.is_set():
                    break
                self.wfile.write(chunk)
        except OSError:
            self.close_connection = True


class _TlsServer(socketserver.ThreadingTCPServer):
    """Accepts on loopback; each worker thread does its own TLS handshake."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    service: EwsService  # set by EwsServer once the port, and so the URL, is known

    def __init__(
        self,
        context: ssl.SSLContext,
        record: Callable[[LabRequest], None],
        host: str,
    ) -> None:
        self.context = context
        self.record = record
        self.stopping = threading.Event()  # ends hostile answers that would go on
        self._connections: set[ssl.SSLSocket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    def finish_request(self, request: socket.socket, client_address: object) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        # Headers and body leave in one write, but small answers must not wait for
        # the client's delayed ACK either.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            logger.debug("TLS handshake from %s failed: %s", client_address, error)
            return
        with self._connections_lock:
            self._connections.add(connection)
        try:
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            connection.close()

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that goes away mid-request is normal here; keep stderr clean.
        logger.debug("connection from %s ended: %r", client_address, sys.exc_info()[1])

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def tls_context(credentials: ServerCredentials) -> ssl.SSLContext:
    """A server context for the scenario's certificate variant."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if credentials.min_security_level < context.security_level:
        # Weak leaves (1024-bit RSA, SHA-1) load only at a lower OpenSSL level.
        context.set_ciphers(f"DEFAULT:@SECLEVEL={credentials.min_security_level}")
    context.load_cert_chain(credentials.chain_pem, credentials.key_pem)
    context.set_alpn_protocols(["http/1.1"])
    return context


class EwsServer:
    """The HTTPS server for one scenario; a context manager."""

    def __init__(
        self,
        scenario: Scenario,
        password: str,
        credentials: ServerCredentials,
        record: Callable[[LabRequest], None] | None = None,
        host: str = "127.0.0.1",
        shell: ShellHandler | None = None,
    ) -> None:
        self.scenario = scenario
        self.host = host
        self._password = password
        self._credentials = credentials
        self._record = record or (lambda request: None)
        self._shell = shell
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"https://{self.scenario.ews_host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        context = tls_context(self._credentials)
        server = _TlsServer(context, self._record, self.host)
        self.port = server.server_address[1]
        server.service = EwsService(
            self.scenario, self._password, self.base_url, shell=self._shell
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"lab-ews-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.debug(
            "lab EWS for %s listening on %s:%s",
            self.scenario.name,
            self.host,
            self.port,
        )

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        logger.debug("lab EWS on port %s stopped", self.port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
