"""The pynetdicom patches of ``dimse.reactor``, checked on pynetdicom's own objects."""

from __future__ import annotations

import socket
import threading

import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from pacsnode.dimse import reactor


def test_letting_the_association_thread_go_clears_its_pause() -> None:
    """Otherwise the next send_*() can slip past and lose its response (a C-MOVE stall)."""
    reactor.install()
    assoc = Association(AE(), "requestor")
    assoc._is_paused = True  # as the association's thread leaves it at its pause point
    assoc._reactor_checkpoint.clear()
    other = threading.Thread(target=assoc._reactor_checkpoint.set)
    other.start()
    other.join()
    assert assoc._reactor_checkpoint.is_set()
    assert assoc._is_paused is False  # the next send_*() waits for a real pause


def test_the_association_thread_sending_itself_keeps_its_pause() -> None:
    """A C-GET's C-STOREs run on the association's thread: it must not wait for itself."""
    reactor.install()
    assoc = Association(AE(), "acceptor")
    assoc._is_paused = True
    seen: list[bool] = []

    def serve() -> None:  # stands in for the thread's own run()
        assoc._reactor_checkpoint.clear()
        assoc._reactor_checkpoint.set()
        seen.append(assoc._is_paused)

    assoc.run = serve  # type: ignore[method-assign]
    assoc.start()
    assoc.join(5)
    assert seen == [True]


def test_outbound_sockets_have_no_nagle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C-STORE is a command PDU and then the data; with Nagle on, each waits ~40 ms.

    The patch is given a plain socket to work on: the test peers of this process
    disable Nagle themselves.
    """
    monkeypatch.setattr(reactor, "_original_create_socket", lambda _self, _address: socket.socket())
    created = reactor._create_socket(None, None)  # type: ignore[arg-type]
    try:
        assert created.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        created.close()
