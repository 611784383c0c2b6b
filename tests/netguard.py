"""Guard: the project's tests may talk to 127.0.0.1 and ::1 only.

Loaded by tests/conftest.py and, with `-p tests.netguard`, by every audit the tests
start in a subprocess. It wraps connect, connect_ex and sendto for every socket and
refuses name lookups other than localhost, so neither a default public resolver nor a
simulated DNS answer naming another address can send a packet off this machine.
"""

from __future__ import annotations

import ipaddress
import socket

ALLOWED = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class ForeignAddress(AssertionError):
    """A test tried to reach an address other than 127.0.0.1 or ::1."""


def check(address: object) -> None:
    if isinstance(address, str | bytes):  # AF_UNIX paths stay on this machine
        return
    if not isinstance(address, tuple) or not address:
        raise ForeignAddress(f"refusing an unknown kind of address {address!r}")
    host = str(address[0]).split("%", 1)[0]
    if host in LOCAL_NAMES:
        return
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ForeignAddress(
            f"refusing to connect by name to {host!r} in tests"
        ) from None
    if ip not in ALLOWED:
        raise ForeignAddress(f"refusing to connect to {ip} in tests: loopback only")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: object) -> None:
    check(address)
    return _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    check(address)
    return _connect_ex(self, address)


def _guarded_sendto(self: socket.socket, data: bytes, *args: object) -> int:
    check(args[-1])
    return _sendto(self, data, *args)


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if host is not None:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOCAL_NAMES:
            try:
                ipaddress.ip_address(name.split("%", 1)[0])
            except ValueError:
                raise ForeignAddress(f"refusing to look up {name!r} in tests") from None
    return _getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]


def uninstall() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _sendto  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    install()


def pytest_unconfigure(config) -> None:  # type: ignore[no-untyped-def]
    uninstall()
