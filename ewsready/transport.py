"""HTTP transport: connect to the addresses the audit resolved, trust what it names.

The audit resolves the EWS host through the configured (public) resolvers and then
connects to exactly those addresses, so what the reachability check judged is what the
EWS checks use. A Route per (host, port) carries the addresses and the CA bundle; the
adapter below applies it to requests and, through BaseProtocol.HTTP_ADAPTER_CLS, to
exchangelib. Hosts without a route fall back to ordinary name resolution.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from dataclasses import dataclass

import requests
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


class _PinnedMixin:
    host: str
    port: int
    timeout: float | None

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


def session() -> requests.Session:
    """A requests session that honours ROUTES and ignores proxy environment settings."""
    s = requests.Session()
    s.trust_env = False
    adapter = PinnedAdapter()
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


def install_for_exchangelib() -> None:
    """Make exchangelib's sessions use the pinned adapter (idempotent)."""
    from exchangelib.protocol import BaseProtocol

    BaseProtocol.HTTP_ADAPTER_CLS = PinnedAdapter
