"""The DIMSE engine itself: several servers in one process, and its requestor.

Servers are objects with their own settings, archive and handlers, not process-wide
state, so two nodes can run side by side in one test process and talk to each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ct_dataset, free_port
from peers import associate
from pydicom import Dataset, dcmread
from pydicom.uid import CTImageStorage as CT
from pydicom.uid import ExplicitVRLittleEndian

from pacsnode.archive.core import Archive
from pacsnode.config import RemoteAE, Settings
from pacsnode.dimse.query_scu import find, move
from pacsnode.dimse.scu import Peer, echo
from pacsnode.net.requestor import AssociationRejected
from pacsnode.node import Node

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def _settings(directory: Path, title: str, port: int, remotes: tuple[RemoteAE, ...]) -> Settings:
    return Settings(
        ae_title=title,
        dicom_port=port,
        http_port=0,
        data_dir=directory,
        bind_address="127.0.0.1",
        remote_ae=remotes,
        check_called_ae=True,
        workers=1,
    )


def _remote(title: str, port: int) -> RemoteAE:
    return RemoteAE(title, "127.0.0.1", port)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two nodes in this process, each knowing the other."""
    port_a, port_b = free_port(), free_port()
    settings_a = _settings(tmp_path / "a", "NODE_A", port_a, (_remote("NODE_B", port_b),))
    settings_b = _settings(tmp_path / "b", "NODE_B", port_b, (_remote("NODE_A", port_a),))
    a, b = Node(settings_a, Archive(settings_a)), Node(settings_b, Archive(settings_b))
    for node in (a, b):
        node.prepare()
        node.start()
    try:
        yield a, b
    finally:
        for node in (a, b):
            node.stop()


def test_two_servers_in_one_process(pair: tuple[Node, Node], tmp_path: Path) -> None:
    a, b = pair
    assert echo(Peer("127.0.0.1", a.settings.dicom_port, "NODE_A")) == 0x0000
    assert echo(Peer("127.0.0.1", b.settings.dicom_port, "NODE_B")) == 0x0000
    with pytest.raises(AssociationRejected):  # each checks its own called AE title
        echo(Peer("127.0.0.1", a.settings.dicom_port, "NODE_B"))
    ct = ct_dataset()
    assert store(a, ct) == 0x0000
    assert a.archive.index.find_instance(str(ct.SOPInstanceUID)) is not None
    assert b.archive.index.find_instance(str(ct.SOPInstanceUID)) is None
    result = move(
        Peer("127.0.0.1", a.settings.dicom_port, "NODE_A", "NODE_B"),
        "study",
        "STUDY",
        {"StudyInstanceUID": str(ct.StudyInstanceUID)},
        "NODE_B",
    )
    assert (result.status, result.completed) == (0x0000, 1)
    found_a = a.archive.index.find_instance(str(ct.SOPInstanceUID))
    found_b = b.archive.index.find_instance(str(ct.SOPInstanceUID))
    assert found_a is not None and found_b is not None
    stored_b = b.archive.storage.absolute(found_b.file_path)
    assert dcmread(stored_b).file_meta.SourceApplicationEntityTitle == "NODE_A"
    assert _data_set(a.archive.storage.absolute(found_a.file_path)) == _data_set(stored_b)
    answers = list(
        find(
            Peer("127.0.0.1", b.settings.dicom_port, "NODE_B"),
            "study",
            "STUDY",
            {"StudyInstanceUID": ""},
        )
    )
    assert [str(answer.StudyInstanceUID) for answer in answers] == [str(ct.StudyInstanceUID)]


def store(node: Node, dataset: Dataset) -> int:
    called = node.settings.ae_title
    assoc = associate(node.settings.dicom_port, [(CT, [ExplicitVRLittleEndian])], called_ae=called)
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def _data_set(path: Path) -> bytes:
    from pacsnode.archive.transcoding import split_meta

    data = path.read_bytes()
    return data[split_meta(memoryview(data))[1] :]


def test_our_find_answers_a_pynetdicom_peer_through_a_small_pdu(pair: tuple[Node, Node]) -> None:
    """A pynetdicom requestor announcing 4 KiB PDUs gets every answer whole."""
    a, _b = pair
    long = ct_dataset(StudyDescription="x" * 60, PatientComments="comment " * 900)
    assert store(a, long) == 0x0000
    assoc = associate(
        a.settings.dicom_port,
        [(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])],
        called_ae="NODE_A",
        max_pdu=4096,
    )
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.PatientComments = ""
    answers = [found for status, found in assoc.send_c_find(query, STUDY_ROOT_FIND) if found]
    assoc.release()
    assert len(answers) == 1
    assert str(answers[0].PatientComments) == ("comment " * 900).strip()


def test_the_pinned_pydicom_is_installed_and_checked() -> None:
    """serve refuses to start on another pydicom; this one is the pinned one."""
    import pydicom

    from pacsnode import pinned

    pinned.check()
    assert pydicom.__version__ == pinned.PYDICOM_VERSION


def test_the_http_listener_hands_its_connections_tcp_nodelay(tmp_path: Path) -> None:
    """uvicorn writes a response's head and body apart: without TCP_NODELAY inherited
    from the listener, each response of a kept-alive connection waits for a delayed ACK."""
    import socket

    from pacsnode.node import bind

    settings = Settings(
        data_dir=tmp_path, dicom_port=free_port(), http_port=free_port(), bind_address="127.0.0.1"
    )
    listeners = bind(settings)
    try:
        assert listeners.http is not None
        client = socket.create_connection(("127.0.0.1", settings.http_port))
        accepted, _ = listeners.http.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        for listener in (listeners.dimse, listeners.tls, listeners.http):
            if listener is not None:
                listener.close()
