"""A node that survives bad input: garbage, broken PDUs, huge lengths, malformed data
sets, a crowd of associations and idle connections, each sent at a real ``pacsnode
serve`` over raw sockets; afterwards echo, store, find and move still work and nothing
acknowledged is lost."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    ct_dataset,
    dataset_bytes,
    free_port,
    save,
    stored_path,
)
from pdu import rejection
from peers import VERIFICATION, associate
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_context, evt
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from test_durability import Sender, assert_all_kept, instances

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 2, 3, 4, 5, 6, 7
ACSE_TIMEOUT, NETWORK_TIMEOUT, MAX_PDU = 2, 3, 16384


def association_request(
    calling_ae: str = "ROBUST", called_ae: str = "PACSNODE", max_pdu: int = 16384
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing Verification in Implicit VR Little Endian."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = called_ae
    context = build_context(VERIFICATION, [ImplicitVRLittleEndian])
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.7156.1"
    primitive.user_information = [maximum, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def connect(server: RunningServer, timeout: float = 20) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(timeout)
    return sock


def read_pdu(sock: socket.socket) -> tuple[int, bytes] | None:
    """The next PDU the server sends (type, body); None once it closed the connection."""
    header = _read_exactly(sock, 6)
    if header is None:
        return None
    pdu_type, _, length = struct.unpack(">BBL", header)
    body = _read_exactly(sock, length)
    assert body is not None, "the server closed in the middle of a PDU"
    return pdu_type, body


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def replies_until_closed(sock: socket.socket) -> list[int]:
    """The types of the PDUs the server sends until it closes the connection.

    Raises TimeoutError if it leaves the connection open past the socket timeout.
    """
    types = []
    while (pdu := read_pdu(sock)) is not None:
        types.append(pdu[0])
    sock.close()
    return types


def established(server: RunningServer) -> socket.socket:
    """A raw socket with an accepted association for Verification."""
    sock = connect(server)
    sock.sendall(association_request())
    reply = read_pdu(sock)
    assert reply is not None and reply[0] == A_ASSOCIATE_AC
    return sock


def peak_memory_mib(server: RunningServer) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) // 1024


class Destination:
    """A C-MOVE destination: a pynetdicom Storage SCP that records what it receives."""

    def __init__(self) -> None:
        self.received: set[str] = set()
        self.port = free_port()
        ae = AE(ae_title="DEST")
        ae.supported_contexts = StoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: evt.Event) -> int:
        self.received.add(str(event.dataset.SOPInstanceUID))
        return 0x0000

    @property
    def remote(self) -> dict[str, object]:
        return {"ae_title": "DEST", "host": "127.0.0.1", "port": self.port}


@pytest.fixture
def destination() -> Iterator[Destination]:
    running = Destination()
    yield running
    assert running.server is not None
    running.server.shutdown()


@pytest.fixture
def robust(server_factory: ServerFactory, destination: Destination) -> Callable[..., RunningServer]:
    """Starts servers that know the C-MOVE destination."""

    def make(**settings: object) -> RunningServer:
        return server_factory(remotes=[destination.remote], **settings)

    return make


@pytest.fixture
def touchy(robust: Callable[..., RunningServer]) -> RunningServer:
    """A server with short timeouts, so that the tests see them expire."""
    return robust(acse_timeout=ACSE_TIMEOUT, network_timeout=NETWORK_TIMEOUT, max_pdu_size=MAX_PDU)


def indexed(server: RunningServer, sop_instance_uid: str) -> bool:
    archive = server.archive()
    try:
        return archive.index.find_instance(sop_instance_uid) is not None
    finally:
        archive.close()


def assert_still_serving(server: RunningServer, destination: Destination, tmp_path: Path) -> None:
    """Echo, store, find and move all work; what was stored is on disk byte-identical."""
    assoc = associate(
        server.port,
        [
            (VERIFICATION, [ImplicitVRLittleEndian]),
            (CTImageStorage, [ExplicitVRLittleEndian]),
            (STUDY_ROOT_FIND, [ExplicitVRLittleEndian]),
            (STUDY_ROOT_MOVE, [ExplicitVRLittleEndian]),
        ],
        timeout=10,
    )
    assert assoc.is_established
    ds = ct_dataset()
    try:
        assert assoc.send_c_echo().Status == 0x0000
        source = save(ds, tmp_path / f"{ds.SOPInstanceUID}.dcm")
        assert assoc.send_c_store(ds).Status == 0x0000
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ds.StudyInstanceUID
        found = [
            identifier.StudyInstanceUID
            for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND)
            if status.Status in (0xFF00, 0xFF01) and identifier is not None
        ]
        assert found == [ds.StudyInstanceUID]
        moved = [s.Status for s, _ in assoc.send_c_move(query, "DEST", STUDY_ROOT_MOVE)]
        assert moved[-1] == 0x0000
    finally:
        assoc.release()
    assert str(ds.SOPInstanceUID) in destination.received
    assert dataset_bytes(stored_path(server, str(ds.SOPInstanceUID))) == dataset_bytes(source)


def test_quiet_association_is_aborted_after_the_network_timeout(
    touchy: RunningServer, destination: Destination, tmp_path: Path
) -> None:
    assoc = associate(touchy.port, [(VERIFICATION, [ImplicitVRLittleEndian])], timeout=60)
    assert assoc.is_established
    deadline = time.monotonic() + 20
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.1)
    assert assoc.is_aborted
    touchy.wait_for_log("network timeout reached")
    assert_still_serving(touchy, destination, tmp_path)


def _garbage(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n" * 20)


def _unknown_type(sock: socket.socket) -> None:
    sock.sendall(struct.pack(">BBL", 0x42, 0, 4) + b"\0" * 4)


def _truncated(sock: socket.socket) -> None:
    """Declares 1000 bytes, sends 100, then nothing: must not hold the thread forever."""
    sock.sendall(struct.pack(">BBL", 0x01, 0, 1000) + association_request()[6:106])


def _shorter_than_content(sock: socket.socket) -> None:
    request = association_request()
    sock.sendall(request[:2] + struct.pack(">L", 20) + request[6:])


def _longer_than_content(sock: socket.socket) -> None:
    request = association_request()
    sock.sendall(request[:2] + struct.pack(">L", len(request)) + request[6:])


def _huge_association_request(sock: socket.socket) -> None:
    sock.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF) + association_request()[6:])


def _bad_called_ae(sock: socket.socket) -> None:
    request = bytearray(association_request())
    request[10:26] = b"\x01\x02\\" + b" " * 13  # control characters and a backslash
    sock.sendall(bytes(request))


def _item_overrunning_its_pdu(sock: socket.socket) -> None:
    request = bytearray(association_request())
    request[76:78] = b"\xff\xff"  # the application context item claims 64 KiB
    sock.sendall(bytes(request))


def _no_presentation_context(sock: socket.socket) -> None:
    request = association_request()
    context = request.index(b"\x20\x00")  # the presentation context item
    length = struct.unpack(">H", request[context + 2 : context + 4])[0]
    body = request[6:context] + request[context + 4 + length :]
    sock.sendall(request[:2] + struct.pack(">L", len(body)) + body)


BROKEN_REQUESTS: dict[str, tuple[Callable[[socket.socket], None], str]] = {
    "garbage": (_garbage, "unknown PDU type 0x47"),
    "unknown PDU type": (_unknown_type, "unknown PDU type 0x42"),
    "truncated": (_truncated, "PDU incomplete"),
    "length shorter than content": (_shorter_than_content, "shorter than its fixed fields"),
    "length longer than content": (_longer_than_content, "PDU incomplete"),
    "huge declared length": (_huge_association_request, "declares 4294967295 bytes"),
    "bad called AE title": (_bad_called_ae, "Called AE Title"),
    "item overrunning its PDU": (_item_overrunning_its_pdu, "item 0x10 is longer than its PDU"),
}


def test_broken_association_requests_are_aborted_and_logged(
    touchy: RunningServer, destination: Destination, tmp_path: Path
) -> None:
    """All at once, so that the ones waiting out the network timeout do so together."""
    sockets = {name: connect(touchy) for name in BROKEN_REQUESTS}
    for name, (attack, _logged) in BROKEN_REQUESTS.items():
        attack(sockets[name])
    for name, sock in sockets.items():
        replies = replies_until_closed(sock)
        assert set(replies) <= {A_ABORT}, (name, replies)
    for _attack, logged in BROKEN_REQUESTS.values():
        touchy.wait_for_log(logged)
    sock = connect(touchy)
    _no_presentation_context(sock)
    replies = replies_until_closed(sock)
    assert replies and replies[0] in (A_ASSOCIATE_RJ, A_ABORT, A_ASSOCIATE_AC), replies
    assert peak_memory_mib(touchy) < 400
    assert_still_serving(touchy, destination, tmp_path)


def _p_data(length: int, body: bytes) -> bytes:
    return struct.pack(">BBL", P_DATA, 0, length) + body


P_DATA_ATTACKS: dict[str, tuple[bytes, str]] = {
    "huge declared length": (_p_data(0xFFFFFFFF, b"\0" * 64), "declares 4294967295 bytes"),
    "over our maximum PDU": (_p_data(MAX_PDU + 4096, b"\0" * 64), f"over {MAX_PDU + 64}"),
    "truncated": (_p_data(1000, b"\0\0\x03\xe4\x01\x03" + b"\0" * 90), "PDU incomplete"),
    "PDV item longer than the PDU": (
        _p_data(12, struct.pack(">LBB", 0xFFFF, 1, 3) + b"\0" * 6),
        "PDV item of 65535 bytes does not fit",
    ),
}


def test_broken_p_data_aborts_the_association_and_is_logged(
    touchy: RunningServer, destination: Destination, tmp_path: Path
) -> None:
    sockets = {name: established(touchy) for name in P_DATA_ATTACKS}
    for name, (data, _logged) in P_DATA_ATTACKS.items():
        sockets[name].sendall(data)
    for name, sock in sockets.items():
        assert replies_until_closed(sock) == [A_ABORT], name
    for _data, logged in P_DATA_ATTACKS.values():
        touchy.wait_for_log(logged)
    assert peak_memory_mib(touchy) < 400
    assert_still_serving(touchy, destination, tmp_path)


def malformed_file(tmp_path: Path, name: str, tail: Callable[[bytes], bytes]) -> tuple[Path, str]:
    """A Part 10 file whose data set bytes are rewritten by ``tail``."""
    ds = ct_dataset()
    path = save(ds, tmp_path / f"{name}.dcm")
    encoded = dataset_bytes(path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - len(encoded)] + tail(encoded))
    return path, str(ds.SOPInstanceUID)


MALFORMED_DATASETS: dict[str, Callable[[bytes], bytes]] = {
    "random bytes": lambda _encoded: bytes(range(7, 255)) * 9,
    "cut inside an element": lambda encoded: encoded[: len(encoded) // 2 + 3],
    "length beyond the end": lambda encoded: encoded[:-40] + b"\x10\x00\x10\x00PN\xff\x7f",
    "implicit VR under an explicit syntax": lambda _encoded: (
        b"\x08\x00\x16\x00" + struct.pack("<L", 26) + CTImageStorage.encode().ljust(26, b"\0")
    ),
    "empty": lambda _encoded: b"",
    "UID with a non-ASCII byte": lambda encoded: encoded.replace(b".3680043.", b".\x80680043.", 1),
}


def test_malformed_data_sets_are_refused_and_the_association_goes_on(
    robust: Callable[..., RunningServer], destination: Destination, tmp_path: Path
) -> None:
    server = robust()
    assoc = associate(server.port, [(CTImageStorage, [ExplicitVRLittleEndian])])
    for name, tail in MALFORMED_DATASETS.items():
        path, uid = malformed_file(tmp_path, name, tail)
        response = assoc.send_c_store(path)
        assert response.Status in (0xA900, 0xC000), (name, hex(response.Status))
        assert not indexed(server, uid)
        server.wait_for_log(f"C-STORE {uid} from MODALITY: status 0x{response.Status:04X}")
    good = ct_dataset()
    assert assoc.send_c_store(good).Status == 0x0000
    assoc.release()
    assert not [p for p in (server.data_dir / "tmp").rglob("*") if p.is_file()], "spool left"
    stored = list(server.data_dir.glob("storage/**/*.dcm"))
    assert [path.name for path in stored] == [stored_path(server, good.SOPInstanceUID).name]
    assert_still_serving(server, destination, tmp_path)


def test_200_simultaneous_association_requests_all_get_an_answer(
    robust: Callable[..., RunningServer], destination: Destination, tmp_path: Path
) -> None:
    server = robust(max_associations=30)
    sockets = [connect(server, timeout=60) for _ in range(200)]
    start = threading.Barrier(len(sockets))
    replies: list[tuple[int, bytes] | None] = [None] * len(sockets)

    def request(number: int) -> None:
        start.wait()
        sockets[number].sendall(association_request(calling_ae=f"CROWD{number}"))
        replies[number] = read_pdu(sockets[number])

    threads = [threading.Thread(target=request, args=(n,)) for n in range(len(sockets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    answered = [reply for reply in replies if reply is not None]
    assert len(answered) == 200
    accepted = [reply for reply in answered if reply[0] == A_ASSOCIATE_AC]
    rejected = [reply for reply in answered if reply[0] == A_ASSOCIATE_RJ]
    assert len(accepted) + len(rejected) == 200
    # Only associations that asked count against the limit, so the first to ask is
    # served whatever the 199 connections still silent. Requests arriving at the same
    # moment count each other, and may all be refused, so fewer than 30 may be served.
    assert 0 < len(accepted) <= 30
    # After a reserved byte: rejected-transient (2), by the service provider's
    # presentation function (3), local limit exceeded (2).
    assert {body[1:4] for _type, body in rejected} == {b"\x02\x03\x02"}
    for sock, reply in zip(sockets, replies, strict=True):
        if reply is not None and reply[0] == A_ASSOCIATE_AC:
            sock.sendall(struct.pack(">BBLL", A_RELEASE_RQ, 0, 4, 0))
            answer = read_pdu(sock)
            assert answer is not None and answer[0] == A_RELEASE_RP
        sock.close()
    assert_still_serving(server, destination, tmp_path)


def test_idle_connections_are_closed_and_do_not_block_others(
    touchy: RunningServer, destination: Destination, tmp_path: Path
) -> None:
    idle = [connect(touchy) for _ in range(10)]
    quiet = [established(touchy) for _ in range(5)]
    assert_still_serving(touchy, destination, tmp_path)
    for sock in idle:
        assert replies_until_closed(sock) == []
    for sock in quiet:
        assert replies_until_closed(sock) == [A_ABORT]
    assert_still_serving(touchy, destination, tmp_path)


def test_silent_connections_do_not_count_against_the_association_limit(
    robust: Callable[..., RunningServer],
) -> None:
    """A port scanner's open connections must not lock the modalities out."""
    server = robust(max_associations=2, acse_timeout=120)
    silent = [connect(server) for _ in range(5)]
    first = associate(server.port, [(VERIFICATION, [ImplicitVRLittleEndian])])
    second = associate(server.port, [(VERIFICATION, [ImplicitVRLittleEndian])])
    assert first.is_established and second.is_established
    assert rejection(server.port) == (0x02, 0x03, 0x02)  # transient, local limit exceeded
    assert first.send_c_echo().Status == 0x0000
    for assoc in (first, second):
        assoc.release()
    for sock in silent:
        sock.close()


def test_a_broken_peer_does_not_disturb_another_association(
    touchy: RunningServer, tmp_path: Path
) -> None:
    sender = Sender(touchy.port, instances(100))
    sender.start()
    sender.wait_for(5)
    for attack, _logged in BROKEN_REQUESTS.values():
        sock = connect(touchy)
        attack(sock)
        sock.close()
    sock = established(touchy)
    sock.sendall(P_DATA_ATTACKS["huge declared length"][0])
    assert replies_until_closed(sock) == [A_ABORT]
    sender.join(60)
    assert sender.error is None
    assert len(sender.acknowledged) == 100
    assert assert_all_kept(touchy, sender.acknowledged, tmp_path) == 100


def test_connections_closed_before_asking_free_their_slots(
    robust: Callable[..., RunningServer],
) -> None:
    """A port scan must not lock everyone out until the ACSE timeout expires."""
    server = robust(max_associations=3, acse_timeout=120)
    for _ in range(10):
        connect(server).close()
    with connect(server) as sock:
        _garbage(sock)
        assert set(replies_until_closed(sock)) <= {A_ABORT}
    deadline = time.monotonic() + 20
    while True:  # the slots free as the server notices the closes
        assoc = associate(server.port, [(VERIFICATION, [ImplicitVRLittleEndian])])
        if assoc.is_established or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
