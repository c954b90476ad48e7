"""The DICOM Upper Layer as it crosses the wire (PS3.8 9.3): PDUs read off a TCP stream,
and a relay that sits between a real requestor and a real acceptor and records them.

It knows nothing of who is on either side, so it measures pacsnode whatever DIMSE
implementation it runs: each P-DATA-TF length against the Maximum Length Received
(user information sub-item 51H) that its receiver announced.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF = 0x01, 0x02, 0x03, 0x04
RELEASE_RQ, RELEASE_RP, ABORT = 0x05, 0x06, 0x07
_FIXED_ASSOCIATE_FIELDS = 68  # version, reserved, called AE, calling AE, reserved
USER_INFORMATION, MAXIMUM_LENGTH = 0x50, 0x51
PRESENTATION_CONTEXT_AC = 0x21


def read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None if the stream ends first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_pdu(sock: socket.socket) -> tuple[int, bytes] | None:
    """One PDU: its type and its body (what the header's length counts)."""
    header = read_exactly(sock, 6)
    if header is None:
        return None
    kind, _, length = struct.unpack(">BBI", header)
    body = read_exactly(sock, length)
    if body is None:
        return None
    return kind, body


def items(data: bytes) -> list[tuple[int, bytes]]:
    """The items (or sub-items) of an A-ASSOCIATE variable field: type, value."""
    found = []
    offset = 0
    while offset + 4 <= len(data):
        kind, _, length = struct.unpack(">BBH", data[offset : offset + 4])
        found.append((kind, data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return found


def maximum_length(associate_body: bytes) -> int | None:
    """The Maximum Length Received an A-ASSOCIATE-RQ or -AC announces (0: unlimited)."""
    for kind, value in items(associate_body[_FIXED_ASSOCIATE_FIELDS:]):
        if kind == USER_INFORMATION:
            for sub_kind, sub_value in items(value):
                if sub_kind == MAXIMUM_LENGTH:
                    return int(struct.unpack(">I", sub_value)[0])
    return None


def context_results(associate_ac_body: bytes) -> dict[int, int]:
    """Presentation context ID to result (0 accepted, 3 abstract syntax not supported,
    4 transfer syntaxes not supported) of an A-ASSOCIATE-AC."""
    return {
        value[0]: value[2]
        for kind, value in items(associate_ac_body[_FIXED_ASSOCIATE_FIELDS:])
        if kind == PRESENTATION_CONTEXT_AC
    }


@dataclass
class Association:
    """What one relayed association carried."""

    requestor_maximum: int | None = None
    acceptor_maximum: int | None = None
    to_acceptor: list[int] = field(default_factory=list)
    """P-DATA-TF lengths the requestor sent."""
    to_requestor: list[int] = field(default_factory=list)
    """P-DATA-TF lengths the acceptor sent."""

    def oversized(self) -> list[str]:
        """Every P-DATA-TF longer than its receiver's maximum, described."""
        found = []
        for lengths, maximum, who in (
            (self.to_requestor, self.requestor_maximum, "acceptor"),
            (self.to_acceptor, self.acceptor_maximum, "requestor"),
        ):
            assert maximum is not None, "no Maximum Length was announced"
            if maximum:  # 0: no limit
                found += [f"{who} sent {n} > {maximum}" for n in lengths if n > maximum]
        return found


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def _pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBI", kind, 0, len(body)) + body


def associate_request(
    calling_ae: str,
    called_ae: str,
    contexts: list[tuple[int, str, list[str]]],
    maximum: int = 16384,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU: presentation contexts as (ID, abstract syntax, syntaxes)."""
    variable = _item(0x10, b"1.2.840.10008.3.1.1.1")
    for context_id, abstract, syntaxes in contexts:
        sub_items = _item(0x30, abstract.encode()) + b"".join(
            _item(0x40, syntax.encode()) for syntax in syntaxes
        )
        variable += _item(0x20, bytes([context_id, 0, 0, 0]) + sub_items)
    user = _item(MAXIMUM_LENGTH, struct.pack(">I", maximum))
    user += _item(0x52, b"1.2.826.0.1.3680043.9.7433.1")  # Implementation Class UID
    variable += _item(USER_INFORMATION, user)
    fixed = struct.pack(
        ">HH16s16s32s", 1, 0, called_ae.ljust(16).encode(), calling_ae.ljust(16).encode(), b""
    )
    return _pdu(ASSOCIATE_RQ, fixed + variable)


def rejection(
    port: int,
    calling_ae: str = "MODALITY",
    called_ae: str = "PACSNODE",
    address: str = "127.0.0.1",
    syntax: str = "1.2.840.10008.1.2",
) -> tuple[int, int, int]:
    """The (result, source, reason) of the A-ASSOCIATE-RJ that an association request
    for Verification gets, read off the wire.

    pynetdicom's requestor can lose a rejection it has received: when the rejection
    comes back quickly and its reactor thread closes the connection before the
    requesting thread looks, it reports an abort (seen under load)."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=30, source_address=(address, 0)
    ) as sock:
        sock.sendall(associate_request(calling_ae, called_ae, [(1, "1.2.840.10008.1.1", [syntax])]))
        reply = read_pdu(sock)
    assert reply is not None, "no answer to the A-ASSOCIATE-RQ"
    kind, body = reply
    assert kind == ASSOCIATE_RJ, f"PDU type 0x{kind:02X}, not A-ASSOCIATE-RJ"
    return body[1], body[2], body[3]


def _element(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, element, len(value)) + value


def echo_request(context_id: int, message_id: int = 1) -> bytes:
    """A P-DATA-TF PDU holding a whole C-ECHO-RQ command (Implicit VR Little Endian)."""
    command = _element(0x0000, 0x0002, b"1.2.840.10008.1.1\0")
    command += _element(0x0000, 0x0100, struct.pack("<H", 0x0030))
    command += _element(0x0000, 0x0110, struct.pack("<H", message_id))
    command += _element(0x0000, 0x0800, struct.pack("<H", 0x0101))
    command = _element(0x0000, 0x0000, struct.pack("<I", len(command))) + command
    pdv = bytes([context_id, 0x03]) + command  # command fragment, the last one
    return _pdu(P_DATA_TF, struct.pack(">I", len(pdv)) + pdv)


class _Connection:
    """The two sockets of one relayed connection, closed once both directions ended."""

    def __init__(self, requestor: socket.socket, acceptor: socket.socket) -> None:
        self.sockets = (requestor, acceptor)
        self._open = 2
        self._lock = threading.Lock()

    def direction_ended(self, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            self._open -= 1
            if self._open:
                return
        for sock in self.sockets:
            sock.close()


class Relay:
    """Listens on a port of its own and relays each connection to ``target_port``,
    one whole PDU at a time, recording them."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.associations: list[Association] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                requestor, _ = self._listener.accept()
            except OSError:
                return
            acceptor = socket.create_connection(("127.0.0.1", self.target_port))
            connection = _Connection(requestor, acceptor)
            association = Association()
            self.associations.append(association)
            for source, sink, upstream in (
                (requestor, acceptor, True),
                (acceptor, requestor, False),
            ):
                threading.Thread(
                    target=self._pump,
                    args=(connection, source, sink, upstream, association),
                    daemon=True,
                ).start()

    @staticmethod
    def _pump(
        connection: _Connection,
        source: socket.socket,
        sink: socket.socket,
        upstream: bool,
        seen: Association,
    ) -> None:
        try:
            while (pdu := read_pdu(source)) is not None:
                kind, body = pdu
                if kind == ASSOCIATE_RQ:
                    seen.requestor_maximum = maximum_length(body)
                elif kind == ASSOCIATE_AC:
                    seen.acceptor_maximum = maximum_length(body)
                elif kind == P_DATA_TF:
                    (seen.to_acceptor if upstream else seen.to_requestor).append(len(body))
                sink.sendall(_pdu(kind, body))
        except OSError:
            pass
        finally:
            connection.direction_ended(sink)

    def close(self) -> None:
        self._listener.close()
