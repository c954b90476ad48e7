"""One TCP or TLS connection carrying PDUs: bounded reads and writes in bursts.

A PDU's declared length is checked before its body is read: a P-DATA-TF may be no
longer than the maximum we announced (plus a little slack for peers that count
their limit differently), any other PDU no longer than a real A-ASSOCIATE needs. So
a header declaring 4 GiB costs nothing, and each read waits at most the network
timeout, so a peer that stops halfway frees its association. Bodies are read into
one buffer reused for every PDU of the connection.

Writes go out as one ``sendmsg`` per burst of buffers (PDU headers and slices of
values or mapped files, never joined), with ``TCP_NODELAY`` set: DIMSE is request
and response, and Nagle's algorithm would hold each response for a delayed ACK.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from collections.abc import Sequence

from pacsnode.net.pdu import HEADER, P_DATA_TF, PDU_NAMES, Abort, PduError, encode_abort

Buffer = bytes | bytearray | memoryview

ASSOCIATION_PDU_LIMIT = 1024 * 1024
"""Far above the largest A-ASSOCIATE: 128 contexts of 64 transfer syntaxes each, plus
two user identity fields of 64 KiB, fit in under half of it."""
P_DATA_SLACK = 64
UNLIMITED_P_DATA = 64 * 1024 * 1024
"""What a P-DATA-TF may hold when we announced no maximum (0)."""
_IOV_MAX = 512
_LINGER = 1.0
"""Seconds a closing connection waits for the peer to close its half."""
_DRAIN_LIMIT = 1024 * 1024
ABORT_INVALID_PDU = encode_abort(Abort(source=2, reason=6))
_UNSET = object()
"""No timeout set through this transport yet: the socket's own may not be what its
descriptor does (one handed over by another process can be non-blocking)."""


class ConnectionClosed(ConnectionError):
    """The peer closed the connection, or it broke, or it stayed silent too long."""


class TimedOut(ConnectionClosed):
    """Nothing arrived within the timeout: between PDUs, or in the middle of one."""


def no_delay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not TCP (a Unix socket in a test)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _peer(sock: socket.socket) -> tuple[str, int]:
    """The peer's address, kept while the connection lasts and after."""
    try:
        address = sock.getpeername()
    except OSError:
        return ("?", 0)
    return (str(address[0]), int(address[1])) if isinstance(address, tuple) else (address, 0)


class Transport:
    def __init__(self, sock: socket.socket, max_receive: int, timeout: float | None) -> None:
        self.sock = sock
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.timeout = timeout
        self.max_p_data = (max_receive or UNLIMITED_P_DATA) + P_DATA_SLACK
        self._header = bytearray(HEADER.size)
        self._body = bytearray(64 * 1024)
        self._timeout_set: object = _UNSET
        self.closed = False
        self.peer = _peer(sock)
        no_delay(sock)

    def _wait_at_most(self, timeout: float | None) -> None:
        """Set the socket's timeout, unless it is set already: each change is a call
        into the kernel, and most PDUs would make two."""
        if timeout != self._timeout_set:
            self.sock.settimeout(timeout)
            self._timeout_set = timeout

    def read_pdu(self, timeout: float | None = None) -> tuple[int, memoryview]:
        """The next PDU's type and body; the body is valid until the next read."""
        self._wait_at_most(self.timeout if timeout is None else timeout)
        waited = self.timeout if timeout is None else timeout
        self._read_into(memoryview(self._header), f"network timeout reached ({waited:g} s)")
        pdu_type, length = HEADER.unpack(self._header)
        if pdu_type not in PDU_NAMES:
            raise PduError(f"unknown PDU type 0x{pdu_type:02X}")
        limit = self.max_p_data if pdu_type == P_DATA_TF else ASSOCIATION_PDU_LIMIT
        if length > limit:
            raise PduError(f"{PDU_NAMES[pdu_type]} declares {length} bytes, over {limit}")
        if length > len(self._body):
            self._body = bytearray(length)
        self._wait_at_most(self.timeout)
        body = memoryview(self._body)[:length]
        self._read_into(body, f"PDU incomplete: {PDU_NAMES[pdu_type]} stopped arriving")
        return pdu_type, body

    def _read_into(self, view: memoryview, silence: str) -> None:
        received = 0
        while received < len(view):
            try:
                count = self.sock.recv_into(view[received:])
            except TimeoutError as exc:
                raise TimedOut(silence) from exc
            except OSError as exc:
                raise ConnectionClosed(str(exc) or type(exc).__name__) from exc
            if not count:
                raise ConnectionClosed("the peer closed the connection")
            received += count

    def readable(self) -> bool:
        """Whether a PDU (or the end of the connection) waits to be read, now."""
        if self.tls and self.sock.pending():  # type: ignore[attr-defined]
            return True
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True  # let the read report what happened
        return bool(ready)

    def send(self, buffers: Sequence[Buffer]) -> None:
        """Write every buffer, in order; raises :class:`ConnectionClosed` if it breaks."""
        self._wait_at_most(self.timeout)
        try:
            if self.tls:
                self.sock.sendall(b"".join(buffers))
                return
            for start in range(0, len(buffers), _IOV_MAX):
                self._sendmsg(list(buffers[start : start + _IOV_MAX]))
        except TimeoutError as exc:
            raise ConnectionClosed("the peer took nothing within the timeout") from exc
        except OSError as exc:
            raise ConnectionClosed(str(exc) or type(exc).__name__) from exc

    def _sendmsg(self, pending: list[Buffer]) -> None:
        while pending:
            sent = self.sock.sendmsg(pending)
            while pending and sent >= len(pending[0]):
                sent -= len(pending[0])
                pending.pop(0)
            if pending and sent:
                pending[0] = memoryview(pending[0])[sent:]

    def abort(self) -> None:
        """A-ABORT by the service provider (a PDU we cannot follow), then close."""
        with contextlib.suppress(ConnectionClosed):
            self.send([ABORT_INVALID_PDU])
        self.close()

    def close(self) -> None:
        """End the connection gracefully: our half first, then what the peer still
        sends is read and dropped for a moment, so that the kernel does not answer it
        with a reset that could destroy our last PDU (an A-ABORT) before it is read."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            self._wait_at_most(_LINGER)
            drained = 0
            while drained < _DRAIN_LIMIT and (chunk := self.sock.recv(65536)):
                drained += len(chunk)
        with contextlib.suppress(OSError):
            self.sock.close()
