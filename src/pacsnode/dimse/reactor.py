"""Faster networking for pynetdicom: event-driven waits, large socket reads, no Nagle
on outbound sockets, and a fix for the race that quicker waits make likelier.

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
import threading
import time
import types
from typing import Any

from pynetdicom import association as _association
from pynetdicom import dul as _dul
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

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
    messages = assoc.dimse.msg_queue
    with messages.not_empty:  # holds the queue's mutex: qsize() would deadlock
        if not messages.queue:
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


def _recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """Read ``nr_bytes`` in as few system calls as the kernel allows.

    pynetdicom reads 4 KiB at a time into a growing bytearray: 128 calls and copies
    for one 512 KiB PDU. Here the whole PDU goes into one buffer in large reads.
    """
    assert self.socket is not None
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    received = 0
    while received < nr_bytes:
        count = self.socket.recv_into(view[received:], nr_bytes - received)
        if not count:  # connection closed: return what arrived, as pynetdicom does
            del view
            del buffer[received:]
            return buffer
        received += count
    return buffer


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


def install() -> None:
    """Patch pynetdicom once per process; calling again changes nothing."""
    if isinstance(_dul.time, _Clock):
        return
    Association.__init__ = _init  # type: ignore[method-assign]
    AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
    clock = _Clock()
    _dul.time = clock
    _association.time = clock
    DULServiceProvider.send_pdu = _send_pdu  # type: ignore[method-assign]
    DULServiceProvider.run_reactor = _run_reactor  # type: ignore[method-assign]
    AssociationSocket.recv = _recv  # type: ignore[method-assign]
