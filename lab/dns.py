"""An authoritative DNS server on loopback that answers from a scenario's records.

The audit resolves the EWS and autodiscover names with dnspython, pointed at this
server in lab mode. Records are data (lab.scenario.DnsRecord); answers may carry any
address, private ones included, because spotting those is the audit's job. The server
itself binds 127.0.0.1 only, UDP and TCP on the same ephemeral port, as resolvers expect
of a nameserver.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import struct
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from lab.scenario import DnsRecord

logger = logging.getLogger(__name__)

# A record type in scenario files that says "this name does not exist".
NXDOMAIN_TYPE = "NXDOMAIN"
# Without EDNS a UDP answer may not exceed 512 bytes (RFC 1035); larger ones are
# truncated so that the client retries over TCP.
CLASSIC_UDP_SIZE = 512
# A CNAME chain longer than this is treated as a loop.
MAX_CNAME_CHAIN = 8
BIND_ATTEMPTS = 5
TCP_IDLE_TIMEOUT = 10.0


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def _parse(record: DnsRecord) -> tuple[str, dns.rdatatype.RdataType, dns.rdata.Rdata]:
    """The record's key and value in wire form; a scenario mistake names the record."""
    try:
        # Through dnspython, so that an internationalised name gets the same
        # (punycode) key as the query that asks for it.
        key = _key(dns.name.from_text(record.name).to_text())
        rdtype = dns.rdatatype.from_text(record.type)
        # Relative to the root, so that "mail.contoso.example" in a CNAME or SRV value
        # means the absolute name, as scenario authors write it.
        value = dns.rdata.from_text(
            dns.rdataclass.IN,
            rdtype,
            record.value,
            origin=dns.name.root,
            relativize=False,
        )
    except (dns.exception.DNSException, ValueError) as error:
        raise ValueError(
            f"DNS record {record.name} {record.type} {record.value!r}: {error}"
        ) from error
    return key, rdtype, value


class _Zone:
    """The records by name, and the answers built from them."""

    def __init__(self, records: Iterable[DnsRecord]) -> None:
        self._absent: set[str] = set()
        self._data: dict[str, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        for record in records:
            if record.type.upper() == NXDOMAIN_TYPE:
                self._absent.add(_key(dns.name.from_text(record.name).to_text()))
                continue
            key, rdtype, value = _parse(record)
            rrsets = self._data.setdefault(key, {})
            rrset = rrsets.get(rdtype)
            if rrset is None:
                rrset = dns.rrset.RRset(
                    dns.name.from_text(key), dns.rdataclass.IN, rdtype
                )
                rrsets[rdtype] = rrset
            # One TTL per RRset (RFC 2181): the smallest given wins.
            rrset.add(value, ttl=record.ttl)

    def exists(self, key: str) -> bool:
        return key in self._data and key not in self._absent

    def answer(
        self, response: dns.message.Message, key: str, rdtype: dns.rdatatype.RdataType
    ) -> None:
        """Fill in the answer and additional sections and the rcode for one question."""
        seen: set[str] = set()
        while len(seen) < MAX_CNAME_CHAIN:
            if not self.exists(key):
                # RFC 6604: after a CNAME, the rcode describes the last name reached;
                # a target outside the lab's data is left for the client to chase.
                if not seen or key in self._absent:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return
            seen.add(key)
            rrsets = self._data[key]

            cname = rrsets.get(dns.rdatatype.CNAME)
            if cname is not None and rdtype not in (
                dns.rdatatype.CNAME,
                dns.rdatatype.ANY,
            ):
                response.answer.append(cname)
                key = _key(next(iter(cname)).target.to_text())
                if key in seen:
                    break
                continue

            if rdtype == dns.rdatatype.ANY:
                response.answer.extend(rrsets.values())
            elif rdtype in rrsets:
                response.answer.append(rrsets[rdtype])
                if rdtype == dns.rdatatype.SRV:
                    self._add_target_addresses(response, rrsets[rdtype])
            return
        logger.warning("CNAME loop in lab DNS data at %s", key)
        response.set_rcode(dns.rcode.SERVFAIL)

    def _add_target_addresses(
        self, response: dns.message.Message, srv: dns.rrset.RRset
    ) -> None:
        # Real servers hand out the SRV targets' addresses to save a round trip.
        for rdata in srv:
            target = _key(rdata.target.to_text())
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                rrset = self._data.get(target, {}).get(rdtype)
                if rrset is not None and self.exists(target):
                    response.additional.append(rrset)


class LabDns:
    """A DNS server for the lab on 127.0.0.1, UDP and TCP on one port."""

    host: str = "127.0.0.1"

    def __init__(self, records: Iterable[DnsRecord]) -> None:
        self._zone = _Zone(records)
        self.port = 0
        self.queries: list[tuple[str, str]] = []
        self._queries_lock = threading.Lock()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._server: threading.Thread | None = None
        self._tcp_threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stopping = threading.Event()

    def __enter__(self) -> Self:
        if self._udp is None:
            self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind UDP and TCP on one free port and start answering."""
        if self._udp is not None:
            raise RuntimeError(f"lab DNS already serving on {self.host}:{self.port}")

        for attempt in range(1, BIND_ATTEMPTS + 1):
            try:
                self._udp, self._tcp = _bind_pair(self.host)
                break
            except OSError as error:
                if error.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS:
                    raise
                logger.debug("lab DNS port clash (attempt %d): %s", attempt, error)
        self.port = self._udp.getsockname()[1]

        self._stopping.clear()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._server = threading.Thread(
            target=self._serve,
            args=(self._udp, self._tcp, self._wake_reader),
            name=f"lab-dns-{self.port}",
            daemon=True,
        )
        self._server.start()
        logger.info("lab DNS serving on %s:%d (UDP and TCP)", self.host, self.port)

    def stop(self) -> None:
        """Stop answering and release the port; harmless when not started."""
        if self._udp is None:
            return
        self._stopping.set()
        if self._wake_writer is not None:
            self._wake_writer.send(b"x")
        # The serving thread goes first, so that no connection is accepted after this.
        if self._server is not None:
            self._server.join(TCP_IDLE_TIMEOUT)
            self._server = None
        with self._connections_lock:
            for connection in self._connections:
                # shutdown() wakes a thread blocked in recv(); close() alone may not.
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    logger.debug("lab DNS connection was already closed")
        for thread in self._tcp_threads:
            thread.join(TCP_IDLE_TIMEOUT)
        self._tcp_threads.clear()
        for sock in (self._udp, self._tcp, self._wake_reader, self._wake_writer):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_reader = self._wake_writer = None
        logger.info("lab DNS on %s:%d stopped", self.host, self.port)

    def _serve(
        self, udp: socket.socket, tcp: socket.socket, wake: socket.socket
    ) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(udp, selectors.EVENT_READ)
            selector.register(tcp, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is udp:
                        self._serve_udp(udp)
                    elif key.fileobj is tcp:
                        self._accept(tcp)

    def _serve_udp(self, udp: socket.socket) -> None:
        try:
            wire, peer = udp.recvfrom(65535)
        except OSError as error:
            logger.debug("lab DNS UDP receive failed: %s", error)
            return
        reply = self._reply(wire, "udp")
        if reply is None:
            return
        try:
            udp.sendto(reply, peer)
        except OSError as error:
            logger.debug("lab DNS could not answer %s: %s", peer, error)

    def _accept(self, tcp: socket.socket) -> None:
        try:
            connection, _ = tcp.accept()
        except OSError as error:
            logger.debug("lab DNS TCP accept failed: %s", error)
            return
        connection.settimeout(TCP_IDLE_TIMEOUT)
        with self._connections_lock:
            self._connections.add(connection)
        thread = threading.Thread(
            target=self._serve_tcp, args=(connection,), daemon=True
        )
        self._tcp_threads = [t for t in self._tcp_threads if t.is_alive()]
        self._tcp_threads.append(thread)
        thread.start()

    def _serve_tcp(self, connection: socket.socket) -> None:
        """Answer length-prefixed queries until the client is done or goes quiet."""
        try:
            while not self._stopping.is_set():
                prefix = _receive_exactly(connection, 2)
                if prefix is None:
                    return
                (length,) = struct.unpack("!H", prefix)
                wire = _receive_exactly(connection, length)
                if wire is None:
                    return
                reply = self._reply(wire, "tcp")
                if reply is not None:
                    connection.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError as error:
            logger.debug("lab DNS TCP connection ended: %s", error)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            connection.close()

    def _reply(self, wire: bytes, transport: str) -> bytes | None:
        """The answer to one query in wire form, or None when it deserves none."""
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError) as error:
            logger.debug("lab DNS ignored a malformed %s packet: %s", transport, error)
            return None
        if query.flags & dns.flags.QR:
            # Never answer an answer: two servers would bounce packets forever.
            return None

        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            question = query.question[0]
            name = _key(question.name.to_text())
            kind = dns.rdatatype.to_text(question.rdtype)
            with self._queries_lock:
                self.queries.append((name, kind))
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
            else:
                try:
                    self._zone.answer(response, name, question.rdtype)
                except Exception:
                    # A bug here must not stop the lab answering everything else;
                    # SERVFAIL tells the client at once instead of after a timeout.
                    logger.exception("lab DNS failed to answer %s %s", name, kind)
                    response.answer.clear()
                    response.additional.clear()
                    response.set_rcode(dns.rcode.SERVFAIL)
            logger.debug(
                "lab DNS %s %s %s -> %s, %d answer(s)",
                transport,
                name,
                kind,
                dns.rcode.to_text(response.rcode()),
                len(response.answer),
            )

        limit = 65535
        if transport == "udp":
            limit = CLASSIC_UDP_SIZE
            if query.edns >= 0:
                limit = max(query.payload, CLASSIC_UDP_SIZE)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on the same ephemeral port (one attempt)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind((host, 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Loopback clients leave ephemeral ports in TIME_WAIT; they must not count
            # as a clash. A live socket on the port still does, hence the retries.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, port))
            tcp.listen()
        except OSError:
            tcp.close()
            raise
    except OSError:
        udp.close()
        raise
    return udp, tcp


def _receive_exactly(connection: socket.socket, count: int) -> bytes | None:
    """`count` bytes, or None when the peer closes first."""
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data
