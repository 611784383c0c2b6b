"""The guard itself: any address but 127.0.0.1 and ::1 is refused before a packet."""

import socket

import pytest

from tests.netguard import ForeignAddress

try:  # pytest-socket guards connect() too, and may refuse first
    from pytest_socket import SocketConnectBlockedError as _SocketBlocked

    REFUSED = (ForeignAddress, _SocketBlocked)
except ImportError:  # pragma: no cover - pytest-socket is in the test extra
    REFUSED = (ForeignAddress,)


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
@pytest.mark.parametrize(
    "address",
    [
        ("192.0.2.1", 443),
        ("10.0.0.1", 53),
        ("127.0.0.2", 80),
        ("2001:db8::1", 443, 0, 0),
    ],
)
def test_connect_elsewhere_is_refused(address):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(REFUSED):
        sock.connect(address)


def test_udp_elsewhere_is_refused():
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(REFUSED),
    ):
        sock.sendto(b"\x00", ("1.1.1.1", 53))


def test_name_lookups_are_refused():
    with pytest.raises(REFUSED):
        socket.getaddrinfo("mail.contoso.example", 443)


def test_loopback_is_allowed():
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()):
            pass
