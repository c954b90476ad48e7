"""Property-based fuzzing of the PDU and data set paths (hypothesis).

Random bytes and mutations of valid PDUs go through the PDU reader we install in
pynetdicom and at a running server; mutations of valid DICOM files go through ingest,
``describe`` and the DICOM JSON metadata. Briefly in CI; longer on demand:
``PACSNODE_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from conftest import RunningServer, ct_dataset, save
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peers import VERIFICATION, associate, stored_checksum
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import P_DATA_TF
from test_robustness import A_ABORT, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA, association_request

from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    SUCCESS,
    Received,
)
from pacsnode.archive.metadata import document
from pacsnode.archive.retrieve import Located
from pacsnode.config import Settings
from pacsnode.dimse import scu
from pacsnode.net import pdu
from pacsnode.net.association import pdv_items
from pacsnode.net.transport import (
    ASSOCIATION_PDU_LIMIT,
    P_DATA_SLACK,
    ConnectionClosed,
    Transport,
)

EXAMPLES = int(os.environ.get("PACSNODE_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no example files in the checkout; a failure prints its input
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MAX_PDU = 16384
ANSWERS = {A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA, pdu.A_RELEASE_RP, A_ABORT}
"""What the server may send a fuzzer: a release request gets its release response."""
ENDINGS = {"closed", "invalid"}
PDU_EVENTS = {*pdu.PDU_NAMES.values(), *ENDINGS}
INGEST_STATUSES = {SUCCESS, DATASET_DOES_NOT_MATCH_SOP_CLASS, CANNOT_UNDERSTAND}
"""What ingest documents for a data set: anything else (0110 processing failure) is a
bug, A700 would be a resource problem, which a fuzzer cannot cause."""


def first_pdu(message: C_ECHO_RQ | C_STORE_RQ) -> bytes:
    """The P-DATA-TF PDU that carries the start of ``message`` on context 1."""
    return bytes(P_DATA_TF(next(message.encode_msg(1, MAX_PDU))).encode())


def echo_request() -> bytes:
    primitive = C_ECHO()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = VERIFICATION
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    return first_pdu(message)


def store_request() -> bytes:
    """A C-STORE-RQ command on Verification's context: refused, but fully decoded."""
    primitive = C_STORE()
    primitive.MessageID = 2
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    primitive.AffectedSOPInstanceUID = "1.2.3.4"
    primitive.Priority = 0
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return first_pdu(message)


VALID_PDUS = {
    "A-ASSOCIATE-RQ": association_request(max_pdu=MAX_PDU),
    "P-DATA-TF echo": echo_request(),
    "P-DATA-TF store": store_request(),
    "A-RELEASE-RQ": struct.pack(">BBLL", 0x05, 0, 4, 0),
    "A-ABORT": struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0, 0),
}


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with some bytes replaced, a piece inserted and perhaps cut short."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def pdu_bytes() -> st.SearchStrategy[bytes]:
    """Random bytes, random bytes behind a plausible header, mutated valid PDUs."""
    headed = st.builds(
        lambda kind, length, body: struct.pack(">BBL", kind, 0, length) + body,
        st.integers(1, 7),
        st.one_of(st.integers(0, 64), st.integers(0, 0xFFFFFFFF)),
        st.binary(max_size=128),
    )
    return st.one_of(
        st.binary(max_size=512),
        headed,
        *(mutated(valid) for valid in VALID_PDUS.values()),
    )


DECODERS = {
    pdu.A_ASSOCIATE_RQ: pdu.decode_request,
    pdu.A_ASSOCIATE_AC: pdu.decode_accept,
    pdu.A_ASSOCIATE_RJ: pdu.decode_reject,
    pdu.A_ABORT: pdu.decode_abort,
    pdu.P_DATA_TF: pdv_items,
}


def read_all_pdus(data: bytes) -> list[str]:
    """What our reader makes of ``data``, read as an acceptor would: the name of each
    PDU read and decoded whole, then how the stream ended."""
    ours, theirs = socket.socketpair()
    transport = Transport(ours, MAX_PDU, 5)
    events: list[str] = []
    try:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        while True:
            try:
                kind, body = transport.read_pdu()
                decoder = DECODERS.get(kind)
                if decoder is not None:
                    decoder(body)
            except pdu.PduError:
                return [*events, "invalid"]
            except ConnectionClosed:
                return [*events, "closed"]
            events.append(pdu.PDU_NAMES[kind])
    finally:
        ours.close()
        theirs.close()


@FUZZ
@given(pdu_bytes())
def test_pdu_reader_only_ever_reads_or_refuses(data: bytes) -> None:
    events = read_all_pdus(data)
    assert set(events) <= PDU_EVENTS
    assert events[-1] in ENDINGS and not ENDINGS & set(events[:-1])
    if len(data) >= 6:
        kind, _, length = struct.unpack(">BBL", data[:6])
        limit = MAX_PDU + P_DATA_SLACK if kind == P_DATA else ASSOCIATION_PDU_LIMIT
        if 1 <= kind <= 7 and length > limit:
            assert events == ["invalid"]  # refused on the header, before any body is read


@pytest.mark.parametrize("name", VALID_PDUS)
def test_valid_pdus_read_whole(name: str) -> None:
    """The other side of the property: the reader is not just refusing everything."""
    events = read_all_pdus(VALID_PDUS[name])
    assert events == [name.split()[0], "closed"]


def exchange(server: RunningServer, data: bytes) -> list[int]:
    """Send ``data``, end our half of the connection, and collect the server's PDUs."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(20)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    kinds = []
    while len(received) >= 6:
        kind, _, length = struct.unpack(">BBL", received[:6])
        kinds.append(kind)
        received = received[6 + length :]
    return kinds


def test_server_survives_fuzzed_pdus(server: RunningServer) -> None:
    request = VALID_PDUS["A-ASSOCIATE-RQ"]

    @FUZZ
    @given(
        st.one_of(
            pdu_bytes(),
            st.builds(lambda tail: request + tail, pdu_bytes()),
        )
    )
    def fuzz(data: bytes) -> None:
        replies = exchange(server, data)
        assert set(replies) <= ANSWERS, replies
        assert server.process is not None and server.process.poll() is None

    fuzz()
    assoc = associate(server.port, [(VERIFICATION, [ImplicitVRLittleEndian])])
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    log = server.log()
    assert "Traceback" not in log and "Exception in thread" not in log


def base_files(directory: Path) -> list[bytes]:
    files = [
        save(ct_dataset(), directory / "ct.dcm"),
        Path(pydicom.__file__).parent / "data" / "test_files" / "rtplan.dcm",
    ]
    return [path.read_bytes() for path in files]


def test_ingest_of_mutated_files_answers_a_documented_status(tmp_path: Path) -> None:
    archive = Archive(
        Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'i.sqlite'}")
    )
    bases = base_files(tmp_path)
    work = tmp_path / "work"
    work.mkdir()

    @FUZZ
    @given(st.sampled_from(bases).flatmap(mutated))
    def fuzz(data: bytes) -> None:
        path = work / "received.dcm"
        path.write_bytes(data)
        described = scu.describe(path)  # None or a description, never an exception
        assert described is None or described.sop_instance
        result = archive.ingest(Received(path=path, source_ae="FUZZER"))
        assert result.status in INGEST_STATUSES, (hex(result.status), result.comment)
        if result.status == SUCCESS and result.sop_instance_uid:
            found = archive.index.find_instance(result.sop_instance_uid)
            assert found is not None
            stored = archive.storage.absolute(found.file_path)
            assert stored_checksum(stored.read_bytes()) == found.checksum
            located = Located(
                found.pk,
                found.study_instance_uid,
                found.series_instance_uid,
                found.sop_instance_uid,
                found.sop_class_uid,
                found.transfer_syntax_uid,
                stored,
                stored.stat().st_size,
                None,
            )
            document(stored, located)  # what DICOMweb metadata serves must convert
        assert_no_half_files(archive)

    try:
        fuzz()
    finally:
        archive.close()


def assert_no_half_files(archive: Archive) -> None:
    """Every file in storage is indexed and every index row has its file."""
    with archive.database.reader.connect() as connection:
        rows = {row[0] for row in connection.execute(sa.text("SELECT file_path FROM instance"))}
    root = archive.storage.root
    on_disk = {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}
    assert on_disk == rows
    assert not list(archive.storage.tmp.iterdir()), "temporary files left behind"
