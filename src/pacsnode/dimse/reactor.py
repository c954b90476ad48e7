"""Faster networking for pynetdicom: event-driven waits, large socket reads, messages
written in bursts, no Nagle on outbound sockets, and fixes for the races that quicker
waits make likelier.

pynetdicom runs two threads per association, each a loop that sleeps 1 ms between
looks at its work: the DUL thread (socket in, PDUs out) and the association thread
(DIMSE messages to serve). A C-STORE crosses both loops several times, so every
object pays a few milliseconds of sleeping: on loopback that is most of the time it
takes. Here the same sleeps end as soon as there is work: the DUL thread wakes when
its socket is readable or a PDU is queued for sending, the association thread when a
DIMSE message is ready. When idle they still wake every millisecond, exactly as
before, so timers, aborts and releases behave as pynetdicom designed them.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
import types
from typing import Any, cast

from pynetdicom import association as _association
from pynetdicom import dul as _dul
from pynetdicom import evt
from pynetdicom import fsm as _fsm
from pynetdicom.association import Association
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE, DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

from pacsnode.dimse import hardening

_REACTOR_DELAY = 0.001
_wakers: dict[int, tuple[socket.socket, socket.socket]] = {}
_wakers_lock = threading.Lock()
_current = threading.local()  # the DUL provider whose reactor runs on this thread


def _waker(provider: DULServiceProvider) -> tuple[socket.socket, socket.socket]:
    key = id(provider)
    with _wakers_lock:
        pair = _wakers.get(key)
        if pair is None:
            pair = socket.socketpair()
            pair[0].setblocking(False)
            pair[1].setblocking(False)
            _wakers[key] = pair
        return pair


def _forget(provider: DULServiceProvider) -> None:
    with _wakers_lock:
        pair = _wakers.pop(id(provider), None)
    if pair is not None:
        for end in pair:
            end.close()


def current_association() -> Association | None:
    """The association whose DUL reactor runs on this thread, if any."""
    provider = getattr(_current, "provider", None)
    return None if provider is None else provider.assoc


def _wait_for_socket(provider: DULServiceProvider, seconds: float) -> None:
    reader, _writer = _waker(provider)
    wrapper = provider.socket
    peer = getattr(wrapper, "socket", None) if wrapper is not None else None
    if isinstance(peer, ssl.SSLSocket) and peer.pending():
        return
    watched = [reader] if peer is None else [reader, peer]
    try:
        ready, _, _ = select.select(watched, [], [], seconds)
    except (OSError, ValueError):  # the peer socket closed under us
        time.sleep(seconds)
        return
    if reader in ready:
        with contextlib.suppress(OSError):
            reader.recv(4096)


def _wait_for_message(assoc: Association, seconds: float) -> None:
    """The association thread's idle wait: until a message arrives, or a send_*()
    asks it to pause (its checkpoint cleared; see :class:`_Checkpoint`)."""
    messages = assoc.dimse.msg_queue
    with messages.not_empty:  # holds the queue's mutex: qsize() would deadlock
        if not messages.queue and assoc._reactor_checkpoint.is_set():
            messages.not_empty.wait(seconds)


class _Clock(types.ModuleType):
    """Stands in for ``time`` inside pynetdicom's ``dul`` and ``association``."""

    def __init__(self) -> None:
        super().__init__("time")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        provider = getattr(_current, "provider", None)
        thread = threading.current_thread()
        if provider is not None:
            _wait_for_socket(provider, seconds)
        elif isinstance(thread, Association) and seconds == _REACTOR_DELAY:
            _wait_for_message(thread, seconds)
        else:
            time.sleep(seconds)


_original_send_pdu = DULServiceProvider.send_pdu
_original_run_reactor = DULServiceProvider.run_reactor


def _send_pdu(self: DULServiceProvider, primitive: Any) -> None:
    _original_send_pdu(self, primitive)
    # What we send is traffic too: during a long C-MOVE the requester is silent while
    # pending responses flow to it, and pynetdicom would call that connection idle
    # and abort it once network_timeout passed.
    self._idle_timer.restart()
    with contextlib.suppress(OSError):
        _waker(self)[1].send(b"\0")


def _run_reactor(self: DULServiceProvider) -> None:
    _current.provider = self
    try:
        _original_run_reactor(self)
    finally:
        _current.provider = None
        _forget(self)


class _Checkpoint(threading.Event):
    """An association's pause point that a send_*() cannot slip past.

    pynetdicom's send_c_store() and the like pause the association's own thread (clear
    its checkpoint, then wait until ``_is_paused``) so that they alone read the
    response. But ``_is_paused`` is still True from the last pause once the thread has
    been let go and has not yet run: the next send_*() goes ahead, and when the peer
    answers quickly the thread's ``get_msg()`` takes the response while the caller
    waits out its DIMSE timeout. Letting the thread go clears ``_is_paused``, so the
    next send_*() waits until the thread is really paused again. Not when the thread
    itself sends (a C-GET's C-STOREs, a report on the same association): it is not at
    its pause point then, and would wait for itself.
    """

    def __init__(self, assoc: Association) -> None:
        super().__init__()
        self.assoc = assoc

    def set(self) -> None:
        if threading.current_thread() is not self.assoc:
            self.assoc._is_paused = False
        super().set()

    def clear(self) -> None:
        """Pausing: wake the thread from its idle wait, so that it reaches its pause
        point now rather than after a millisecond, which every C-STORE would pay."""
        super().clear()
        if threading.current_thread() is not self.assoc:
            messages = self.assoc.dimse.msg_queue
            with messages.not_empty:
                messages.not_empty.notify_all()


_serving_report = threading.local()
_original_serve_request = Association._serve_request


def _serve_report_aside(self: Association, msg: Any, context_id: int) -> None:
    """pynetdicom serves an N-EVENT-REPORT (a storage commitment report, a printer's
    event) on a thread of its own, whose ``_serve_request`` ends by setting
    ``_is_paused = False``. That flag is the association thread's: landing after a
    send_*() or release() has seen the thread pause, it makes the caller wait for a
    pause that already happened, forever. Writes from such a thread are dropped."""
    if threading.current_thread() is self:
        _original_serve_request(self, msg, context_id)
        return
    _serving_report.active = True
    try:
        _original_serve_request(self, msg, context_id)
    finally:
        _serving_report.active = False


def _get_paused(self: Association) -> bool:
    return bool(self.__dict__.get("_is_paused", False))


def _set_paused(self: Association, value: bool) -> None:
    if not getattr(_serving_report, "active", False):
        self.__dict__["_is_paused"] = value


_original_init = Association.__init__
_original_create_socket = AssociationSocket._create_socket


def _create_socket(self: AssociationSocket, address: Any) -> socket.socket:
    """Outbound sockets without Nagle's algorithm, as the server's accepted ones.

    A C-STORE is a small command PDU and then the data: with Nagle on, the second
    waits for the peer's delayed ACK of the first, some 40 ms an instance.
    """
    created = _original_create_socket(self, address)
    created.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return created


def _init(self: Association, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self._reactor_checkpoint = _Checkpoint(self)
    self._reactor_checkpoint.set()


_BURST_BYTES = 4 * 1024 * 1024


class _Burst(P_DATA):
    """Consecutive P-DATA fragments of one DIMSE message, written to the socket at once.

    pynetdicom hands each PDU from the association thread to the DUL thread and
    through the state machine on its own: for a 512 KiB image in 16 KiB PDUs, 32
    thread handovers, most of the time a C-STORE takes. A burst makes it one.
    """

    def __init__(self, fragments: list[P_DATA]) -> None:
        super().__init__()
        self.fragments = fragments

    def encode(self) -> bytearray:
        encoded = bytearray()
        for fragment in self.fragments:
            values = fragment.presentation_data_value_list
            length = sum(4 + 1 + len(data) for _context, data in values)
            encoded += struct.pack(">BBI", 0x04, 0, length)  # P-DATA-TF PDU header
            for context_id, data in values:
                encoded += struct.pack(">IB", len(data) + 1, context_id)  # PDV item
                encoded += data
        return encoded


def _send_data(dul: DULServiceProvider) -> str:
    """The state machine's DT-1 (send P-DATA-TF), for bursts too."""
    primitive = cast(P_DATA, dul.to_provider_queue.get(False))
    if isinstance(primitive, _Burst):
        if dul.socket is not None:
            dul.socket.send(memoryview(primitive.encode()))  # type: ignore[arg-type]
    else:
        dul._send(P_DATA_TF(primitive))
    return "Sta6"


def _send_msg(self: DIMSEServiceProvider, primitive: Any, context_id: int) -> None:
    """pynetdicom's send_msg(), with the fragments of a message sent in bursts."""
    if primitive.MessageIDBeingRespondedTo is None:
        message = _RQ_TO_MESSAGE[primitive.__class__]()
    else:
        message = _RSP_TO_MESSAGE[primitive.__class__]()
    message.primitive_to_message(primitive)
    message.context_id = context_id
    evt.trigger(self.assoc, evt.EVT_DIMSE_SENT, {"message": message})
    pending: list[P_DATA] = []
    size = 0
    for fragment in message.encode_msg(context_id, self.maximum_pdu_size):
        pending.append(fragment)
        size += sum(len(data) for _context, data in fragment.presentation_data_value_list)
        if size >= _BURST_BYTES:  # memory stays bounded for a 1 GiB multi-frame
            self.dul.send_pdu(_Burst(pending))
            pending, size = [], 0
    if pending:
        self.dul.send_pdu(_Burst(pending) if len(pending) > 1 else pending[0])


def install() -> None:
    """Patch pynetdicom once per process; calling again changes nothing."""
    if isinstance(_dul.time, _Clock):
        return
    Association.__init__ = _init  # type: ignore[method-assign]
    Association._serve_request = _serve_report_aside  # type: ignore[method-assign]
    Association._is_paused = property(_get_paused, _set_paused)  # type: ignore[assignment]
    DIMSEServiceProvider.send_msg = _send_msg  # type: ignore[method-assign]
    _fsm.ACTIONS["DT-1"] = ("Send P-DATA-TF PDU", _send_data, "Sta6")
    AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
    clock = _Clock()
    _dul.time = clock
    _association.time = clock
    DULServiceProvider.send_pdu = _send_pdu  # type: ignore[method-assign]
    DULServiceProvider.run_reactor = _run_reactor  # type: ignore[method-assign]
    hardening.install()  # bounded PDU reads in few large system calls, and more
