"""What pynetdicom needs so that a broken or hostile peer costs only its own connection.

* **Bounded PDU reads.** pynetdicom reads a PDU by the length its 6-byte header
  declares, in blocking calls on a socket without a timeout. A header declaring 4 GiB
  made the process allocate 4 GiB before a single byte of it arrived, and a PDU that
  stopped halfway held its thread and association slot until the peer chose to close,
  whatever the network timeout. Here the declared length is checked before anything is
  read: a P-DATA-TF may be no longer than the maximum PDU length we announced (plus a
  little slack), any other PDU no longer than a real A-ASSOCIATE needs. The body must
  then keep arriving within the network timeout, and its buffer grows with what
  arrives, not with what was declared. A breach is an invalid PDU (Evt19): the state
  machine answers with an A-ABORT and drops the connection. Once aborted (Sta13),
  further bad data closes the connection at once instead of drawing an A-ABORT and an
  error line for every six bytes of garbage.
* **Threads freed at once.** The thread of an accepted connection waits up to the
  ACSE timeout for the A-ASSOCIATE-RQ, even when the peer has already closed or been
  aborted, and pynetdicom counts that thread against its connection limit: a port
  scanner could hold every place. The thread is now woken as the connection ends.
* **Late primitives dropped.** When our side answers (accepts, responds, releases)
  just as the peer aborts or the connection drops, pynetdicom's state table has no
  entry for the answer and raises, killing the DUL thread with a traceback. The
  answer has nobody to go to: it is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import time

from pynetdicom import fsm
from pynetdicom.dul import DULServiceProvider

log = logging.getLogger("pacsnode.dimse")

P_DATA_TF = 0x04
PDU_TYPES = frozenset(range(0x01, 0x08))
HEADER = struct.Struct(">BBL")
ASSOCIATION_PDU_LIMIT = 1024 * 1024
"""Far above the largest A-ASSOCIATE: 128 contexts of 64 transfer syntaxes each, plus
two user identity fields of 64 KiB, fit in under half of it."""
P_DATA_SLACK = 64
"""Tolerance over our maximum length, for peers that count their limit against the data
of a fragment rather than the whole PDU."""
_GROWTH = 4 * 1024 * 1024
_ENDED = ("Evt17", "Evt19")  # the connection closed; an invalid PDU (we abort)
_LOCAL_PRIMITIVES = frozenset({"Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})
_original_do_action = fsm.StateMachine.do_action


class _Stalled(Exception):
    """The peer sent part of a PDU and then nothing for the network timeout."""


def _peer(dul: DULServiceProvider) -> str:
    try:
        address = dul.socket.socket.getpeername()  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return "a closed connection"
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


def _limit(dul: DULServiceProvider, pdu_type: int) -> int | None:
    """The longest PDU of ``pdu_type`` we read; None when configured as unlimited."""
    if pdu_type != P_DATA_TF:
        return ASSOCIATION_PDU_LIMIT
    local = dul.assoc.acceptor if dul.assoc.is_acceptor else dul.assoc.requestor
    maximum = local.maximum_length
    return maximum + P_DATA_SLACK if maximum else None


def _readable(sock: socket.socket, deadline: float | None) -> bool:
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    ready, _, _ = select.select([sock], [], [], timeout)
    return bool(ready)


def receive(sock: socket.socket, count: int, timeout: float | None) -> bytearray | None:
    """Exactly ``count`` bytes in few large reads; None if the peer closes first.

    Raises _Stalled when no byte arrives for ``timeout`` seconds.
    """
    buffer = bytearray(min(count, _GROWTH))
    received = 0
    while received < count:
        if received == len(buffer):
            buffer.extend(bytes(min(count - received, _GROWTH)))
        if timeout is not None and not _readable(sock, time.monotonic() + timeout):
            raise _Stalled
        with memoryview(buffer) as view:
            read = sock.recv_into(view[received:])
        if not read:
            return None
        received += read
    return buffer


def _invalid(dul: DULServiceProvider, problem: str) -> None:
    if dul.state_machine.current_state == "Sta13":  # already aborted: just hang up
        log.debug("closing the connection from %s: %s", _peer(dul), problem)
        dul.socket.close()  # type: ignore[union-attr]
        return
    log.error("aborting the connection with %s: %s", _peer(dul), problem)
    dul.event_queue.put("Evt19")  # invalid PDU: the state machine sends A-ABORT


def _read_pdu_data(self: DULServiceProvider) -> None:
    """pynetdicom's ``_read_pdu_data``, with the declared length and the wait bounded."""
    awaiting_request = self.state_machine.current_state == "Sta2"
    _read_pdu(self)
    if awaiting_request and self.event_queue.queue and self.event_queue.queue[-1] in _ENDED:
        # The acceptor's thread waits for an A-ASSOCIATE-RQ that will not come: None is
        # what it gets when its wait times out, and it then closes down.
        self.to_user_queue.put(None)


def _read_pdu(self: DULServiceProvider) -> None:
    assert self.socket is not None and self.socket.socket is not None
    sock, timeout = self.socket.socket, self.network_timeout
    try:
        header = receive(sock, HEADER.size, timeout)
        if header is None:
            self.event_queue.put("Evt17")  # transport closed
            return
        pdu_type, _, length = HEADER.unpack(header)
        if pdu_type not in PDU_TYPES:
            _invalid(self, f"unknown PDU type 0x{pdu_type:02X}")
            return
        limit = _limit(self, pdu_type)
        if limit is not None and length > limit:
            _invalid(self, f"PDU type 0x{pdu_type:02X} declares {length} bytes, over {limit}")
            return
        body = receive(sock, length, timeout)
    except _Stalled:
        _invalid(self, f"PDU incomplete after {timeout} s without data (network_timeout)")
        return
    except OSError as exc:
        log.info("connection from %s lost: %s", _peer(self), exc)
        self.event_queue.put("Evt17")
        return
    if body is None:
        log.warning("connection from %s closed in the middle of a PDU", _peer(self))
        self.event_queue.put("Evt17")
        return
    try:
        pdu, event = self._decode_pdu(header + body)
    except Exception as exc:  # whatever pynetdicom raises, the PDU is invalid
        _invalid(self, f"invalid PDU type 0x{pdu_type:02X}: {exc}")
        return
    self.event_queue.put(event)
    self._recv_pdu.put(pdu)


def _do_action(self: fsm.StateMachine, event: str) -> None:
    """pynetdicom's ``do_action``, dropping what our side sends after the connection
    is gone (Sta1) or aborted (Sta13)."""
    gone = self.current_state in ("Sta1", "Sta13")
    if (
        gone
        and event in _LOCAL_PRIMITIVES
        and (event, self.current_state) not in fsm.TRANSITION_TABLE
    ):
        with contextlib.suppress(queue.Empty):
            self.dul.to_provider_queue.get(False)  # the primitive that raised the event
        log.debug("dropped %s: the connection is %s", event, self.current_state)
        return
    _original_do_action(self, event)


def install() -> None:
    """Patch pynetdicom's PDU reader and state machine; calling again changes nothing."""
    DULServiceProvider._read_pdu_data = _read_pdu_data  # type: ignore[method-assign]
    fsm.StateMachine.do_action = _do_action  # type: ignore[method-assign]
