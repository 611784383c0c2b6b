"""HTTP transport: connect to the addresses the audit resolved, trust what it names.

The audit resolves the EWS host through the configured (public) resolvers and then
connects to exactly those addresses, so what the reachability check judged is what the
EWS checks use. A Route per (host, port) carries the addresses and the CA bundle; the
adapter below applies it to requests and, through BaseProtocol.HTTP_ADAPTER_CLS, to
exchangelib. Hosts without a route fall back to ordinary name resolution.

`LimitedAdapter` adds what a hostile or broken server cannot get round: the read
timeout of a request is a deadline for its whole answer (a server that sends one byte
a second never lets a per-read timeout expire), and an answer may not grow beyond
`max_answer` bytes, counted on the wire and again after decompression. Each answer is
read through a `_LimitedReader` that sets the socket timeout to what is left of the
deadline before every read and counts the bytes; what went wrong is raised as an
`AnswerFault` that says it in words ("sent no answer within 2 s").
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

log = logging.getLogger(__name__)


class RouteRefused(OSError):
    """A connection the route forbids (lab mode allows loopback only)."""


@dataclass(frozen=True)
class Route:
    addresses: tuple[str, ...]
    # A CA bundle path; False only for requests without credentials (or with a pin).
    verify: str | bool
    loopback_only: bool = False
    # A pinned certificate (SHA-256 of the leaf, hex): trusted whatever its issuer,
    # and the only certificate trusted.
    fingerprint: str | None = None


class Routes:
    """Process-wide table of pinned endpoints, keyed by (host, port)."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, int], Route] = {}
        self._lock = threading.Lock()

    def set(self, host: str, port: int, route: Route) -> None:
        for address in route.addresses:
            if route.loopback_only and not ipaddress.ip_address(address).is_loopback:
                raise RouteRefused(f"route for {host} names non-loopback {address}")
        with self._lock:
            self._routes[(host.casefold().rstrip("."), port)] = route

    def get(self, host: str, port: int) -> Route | None:
        with self._lock:
            return self._routes.get((host.casefold().rstrip("."), port))

    def remove(self, host: str, port: int) -> None:
        with self._lock:
            self._routes.pop((host.casefold().rstrip("."), port), None)


ROUTES = Routes()


def open_pinned(
    route: Route,
    port: int,
    timeout: float | None,
    options: list[tuple[int, int, int]] | None = None,
) -> socket.socket:
    """A TCP connection to the first route address that answers, with urllib3's
    socket options (TCP_NODELAY: without it each request waits on a delayed ACK)."""
    last: OSError | None = None
    for address in route.addresses:
        if route.loopback_only and not ipaddress.ip_address(address).is_loopback:
            raise RouteRefused(
                f"refusing to connect to non-loopback {address} in lab mode"
            )
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            log.debug("connect %s:%s failed: %s", address, port, exc)
            last = exc
            continue
        for level, name, value in options or ():
            sock.setsockopt(level, name, value)
        return sock
    raise last or OSError("the route has no address")


# --- answers within a deadline and a size cap ---------------------------------------

MAX_ANSWER_BYTES = 8 * 1024 * 1024  # far above any answer the audit asks for


@dataclass
class AnswerBudget:
    """The limits of one request's answer, and how much of it has arrived."""

    url: str
    started: float  # time.monotonic() when the request left
    seconds: float | None  # the whole answer must arrive within this; None: no limit
    max_bytes: int
    received: int = 0

    @property
    def deadline(self) -> float | None:
        return None if self.seconds is None else self.started + self.seconds


class AnswerFault(requests.exceptions.ConnectionError):
    """An answer that did not arrive whole: `what` says what the server did, as a
    clause to follow the endpoint's name ("sent no answer within 2 s")."""

    code = "AnswerFault"

    def __init__(self, url: str, what: str) -> None:
        super().__init__(f"{url} {what}")
        self.url = url
        self.what = what


class NoAnswer(AnswerFault):
    code = "NoAnswer"


class AnswerTooSlow(AnswerFault):
    code = "AnswerTooSlow"


class ConnectionCut(AnswerFault):
    code = "ConnectionReset"


class AnswerTooLarge(AnswerFault):
    code = "AnswerTooLarge"


def causes(exc: BaseException) -> Iterator[BaseException]:
    """exc and what it wraps: causes, contexts and exceptions carried as arguments or
    as a reason (urllib3 and requests keep the original error there)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        )
        todo.extend(e for e in linked if isinstance(e, BaseException))


def answer_fault(exc: BaseException) -> AnswerFault | None:
    """The AnswerFault behind exc, however deeply the HTTP libraries wrapped it."""
    return next((e for e in causes(exc) if isinstance(e, AnswerFault)), None)


def diagnose(exc: BaseException) -> tuple[str, str] | None:
    """(code, what the server did) for a failure on the wire, or None: an AnswerFault,
    or the error that http.client, urllib3 or the socket raised, under whatever
    wrapping requests and exchangelib added."""
    chain = list(causes(exc))
    for error in chain:
        if isinstance(error, AnswerFault):
            return error.code, error.what
    for error in chain:
        if isinstance(error, http.client.IncompleteRead):
            # http.client keeps the bytes read, urllib3's subclass their number.
            partial = error.partial
            got = partial if isinstance(partial, int) else len(partial)
            expected = error.expected
            if expected:
                what = f"cut the connection after {got} of the {got + expected} bytes"
                return "ConnectionReset", what + " its answer announced"
            return "ConnectionReset", f"cut the connection after {bytes_text(got)}"
        if isinstance(error, http.client.RemoteDisconnected):
            return "ConnectionReset", "closed the connection without answering"
        if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
            return "NoConnection", "did not accept a connection in time"
        if isinstance(error, urllib3.exceptions.NewConnectionError):
            return "NoConnection", "could not be connected to"
        if isinstance(error, ConnectionResetError):
            return "ConnectionReset", "reset the connection"
        if isinstance(error, TimeoutError):
            return "NoAnswer", "did not answer in time"
    return None


def seconds_text(seconds: float) -> str:
    """2 -> '2 s', 0.5 -> '0.5 s', 12.25 -> '12 s'."""
    if seconds >= 10:
        return f"{seconds:.0f} s"
    return f"{seconds:.1f}".rstrip("0").rstrip(".") + " s"


def bytes_text(count: int) -> str:
    return "1 byte" if count == 1 else f"{count} bytes"


def size_text(size: int) -> str:
    """8388608 -> '8 MiB', 65536 -> '64 KiB'."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def too_large(budget: AnswerBudget) -> AnswerTooLarge:
    return AnswerTooLarge(
        budget.url,
        f"sent an answer larger than {size_text(budget.max_bytes)}; the audit stopped "
        "reading it there",
    )


class _LimitedReader(io.RawIOBase):
    """The socket under one HTTP answer, read within the answer's budget.

    TODO: The TLS handshake of a new connection happens before the answer and is
    bounded only per read by the connect timeout, so a server that drips its
    handshake one byte at a time can hold a request longer than its deadline.
    """

    def __init__(self, sock: socket.socket, budget: AnswerBudget) -> None:
        super().__init__()
        self._sock = sock
        self._budget = budget
        # Put back after each read: the connection may go back to the pool.
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        budget = self._budget
        deadline = budget.deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._late()
            self._sock.settimeout(left)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            raise self._late() from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            raise self._cut("reset the connection") from None
        except ssl.SSLError as exc:
            raise self._cut(f"broke the TLS session ({exc.reason or exc})") from None
        finally:
            if deadline is not None:
                self._sock.settimeout(self._timeout)
        budget.received += count
        if budget.received > budget.max_bytes:
            raise too_large(budget)
        return count

    def _late(self) -> AnswerFault:
        budget = self._budget
        waited = budget.seconds
        if waited is None:  # only the socket's own timeout was set
            waited = time.monotonic() - budget.started
        limit = seconds_text(waited)
        if budget.received == 0:
            return NoAnswer(
                budget.url, f"accepted the connection but sent no answer within {limit}"
            )
        return AnswerTooSlow(
            budget.url,
            f"sent only {bytes_text(budget.received)} of its answer within {limit}, "
            "the time allowed for a whole answer",
        )

    def _cut(self, what: str) -> ConnectionCut:
        received = self._budget.received
        where = (
            f"after {bytes_text(received)} of its answer"
            if received
            else "before answering"
        )
        return ConnectionCut(self._budget.url, f"{what} {where}")


_handoff = threading.local()


class _LimitedResponse(http.client.HTTPResponse):
    """http.client's response, read through a _LimitedReader when the request that
    is being sent on this thread has a budget."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        budget = getattr(_handoff, "budget", None)
        if budget is not None:
            self.fp.close()
            self.fp = io.BufferedReader(_LimitedReader(sock, budget), 65536)


class _PinnedMixin:
    host: str
    port: int
    timeout: float | None
    response_class = _LimitedResponse

    def _new_conn(self) -> socket.socket:
        route = ROUTES.get(self.host, self.port)
        if route is None:
            return super()._new_conn()  # type: ignore[misc]
        try:
            options = getattr(self, "socket_options", None)
            return open_pinned(route, self.port, self.timeout, options)
        except OSError as exc:
            raise NewConnectionError(self, f"connect to {self.host}: {exc}") from exc


class PinnedHTTPConnection(_PinnedMixin, HTTPConnection):
    pass


class PinnedHTTPSConnection(_PinnedMixin, HTTPSConnection):
    pass


class PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """An HTTPAdapter that applies ROUTES: pinned addresses and per-endpoint trust."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": PinnedHTTPConnectionPool,
            "https": PinnedHTTPSConnectionPool,
        }

    @staticmethod
    def _route_of(request) -> Route | None:  # type: ignore[no-untyped-def]
        parsed = requests.utils.urlparse(request.url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return ROUTES.get(parsed.hostname or "", port)

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        scheme = str(request.headers.get("Authorization", "")).partition(" ")[0]
        if scheme.casefold() == "basic" and not (request.url or "").startswith(
            "https://"
        ):
            # The last line of defence: Basic credentials never go over plain HTTP
            # (NTLM and Kerberos over http encrypt the WinRM messages themselves).
            raise ValueError("refusing to send Basic credentials over plain HTTP")
        route = self._route_of(request)
        if route is not None:
            # With a pin, the fingerprint urllib3 asserts is the whole trust: a CA
            # bundle here would make requests demand a chain as well.
            kwargs["verify"] = False if route.fingerprint else route.verify
        return super().send(request, **kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[no-untyped-def]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        route = self._route_of(request)
        if route is not None and route.fingerprint:
            # The pinned certificate is the trust: urllib3 compares the leaf's digest.
            pool_kwargs["cert_reqs"] = "CERT_NONE"
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["assert_fingerprint"] = route.fingerprint
        return host_params, pool_kwargs


def _read_seconds(timeout: object) -> float | None:
    """The read part of a requests timeout: a number, a (connect, read) pair or a
    urllib3 Timeout."""
    if isinstance(timeout, tuple):
        timeout = timeout[1]
    if isinstance(timeout, urllib3.Timeout):
        timeout = timeout.read_timeout
    return float(timeout) if isinstance(timeout, int | float) else None


class LimitedAdapter(PinnedAdapter):
    """PinnedAdapter whose answers arrive within the request's read timeout, whole,
    and no larger than max_answer bytes.

    A request that does not ask to stream has its body read here, under those
    limits, and then passed to `screen`; a streamed answer keeps its limits for the
    reads its caller makes later.
    """

    max_answer = MAX_ANSWER_BYTES

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        stream = kwargs.pop("stream", False)
        budget = AnswerBudget(
            request.url or "",
            time.monotonic(),
            _read_seconds(kwargs.get("timeout")),
            self.max_answer,
        )
        _handoff.budget = budget
        try:
            response = self.send_unlimited(request, stream=True, **kwargs)
        finally:
            _handoff.budget = None
        if stream:
            return response
        self._read_body(response, budget)
        self.screen(request, response)
        return response

    def send_unlimited(self, request, **kwargs):  # type: ignore[no-untyped-def]
        """The request itself; a subclass may change how it is sent."""
        return super().send(request, **kwargs)

    def screen(self, request, response) -> None:  # type: ignore[no-untyped-def]
        """Refuse an answer before the caller sees it (raise an AnswerFault)."""

    @staticmethod
    def _read_body(response: requests.Response, budget: AnswerBudget) -> None:
        """The whole body, decompressed, no larger than the budget allows."""
        chunks = []
        size = 0
        for chunk in response.iter_content(65536):
            size += len(chunk)
            if size > budget.max_bytes:
                response.close()
                raise too_large(budget)
            chunks.append(chunk)
        response._content = b"".join(chunks)
        response._content_consumed = True
        log.debug(
            "%s %s: %s, %d bytes in %.3f s",
            response.request.method if response.request else "?",
            budget.url,
            response.status_code,
            size,
            time.monotonic() - budget.started,
        )


def session() -> requests.Session:
    """A requests session that honours ROUTES and ignores proxy environment settings."""
    s = requests.Session()
    s.trust_env = False
    adapter = PinnedAdapter()
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


def install_for_exchangelib(adapter: type[PinnedAdapter] = LimitedAdapter) -> None:
    """Make exchangelib's sessions use this adapter (idempotent)."""
    from exchangelib.protocol import BaseProtocol

    BaseProtocol.HTTP_ADAPTER_CLS = adapter
