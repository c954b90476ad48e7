"""C-MOVE and C-GET against real peers: DCMTK movescu/storescp/getscu and pynetdicom."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port
from pdu import Relay
from peers import associate, dcmtk, send_datasets, send_files
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, StoragePresentationContexts, build_role, evt

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
JPEG_FILE = Path(pydicom.data.get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", read=False) or "")


class Receiver:
    """A pynetdicom Storage SCP that keeps what it receives (SIDICOM's temporary SCP)."""

    def __init__(self, syntaxes: list[str]) -> None:
        self.port = free_port()
        self.received: dict[str, Dataset] = {}
        self.syntaxes: dict[str, str] = {}
        ae = AE(ae_title="RECEIVER")
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context("1.2.840.10008.5.1.4.1.1.7", syntaxes)
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store)],
        )

    def _store(self, event: evt.Event) -> int:
        ds = event.dataset
        self.received[str(ds.SOPInstanceUID)] = ds
        self.syntaxes[str(ds.SOPInstanceUID)] = str(event.context.transfer_syntax)
        return 0x0000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver([ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    yield running
    running.server.shutdown()


@pytest.fixture
def archive(server_factory: ServerFactory, receiver: Receiver, tmp_path: Path) -> RunningServer:
    storescp_port = free_port()
    return server_factory(
        remotes=[
            {"ae_title": "RECEIVER", "host": "127.0.0.1", "port": receiver.port},
            {"ae_title": "STORESCP", "host": "127.0.0.1", "port": storescp_port},
        ]
    )


def _load(server: RunningServer) -> dict[str, str]:
    study, series = generate_uid(), generate_uid()
    cts = [ct_dataset(study=study, series=series, InstanceNumber=n) for n in (1, 2, 3)]
    assert send_datasets(server.port, cts) == [0, 0, 0]
    jpeg = dcmread(JPEG_FILE)
    assert send_files(server.port, [JPEG_FILE])[JPEG_FILE].Status == 0
    return {
        "study": study,
        "series": series,
        "jpeg_study": str(jpeg.StudyInstanceUID),
        "jpeg": str(jpeg.SOPInstanceUID),
    }


def move(port: int, destination: str, **keys: str) -> list[Dataset]:
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])], calling_ae="WS")
    responses = [
        status for status, _ in assoc.send_c_move(identifier, destination, STUDY_ROOT_MOVE)
    ]
    assoc.release()
    return responses


def test_move_study_to_a_receiver(archive: RunningServer, receiver: Receiver) -> None:
    uids = _load(archive)
    responses = move(
        archive.port, "RECEIVER", QueryRetrieveLevel="STUDY", StudyInstanceUID=uids["study"]
    )
    final = responses[-1]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 3
    assert all(r.Status == 0xFF00 for r in responses[:-1])
    assert len(receiver.received) == 3
    for ds in receiver.received.values():
        assert str(ds.StudyInstanceUID) == uids["study"]


def test_jpeg_arrives_decompressed_at_an_uncompressed_only_receiver(
    archive: RunningServer, receiver: Receiver
) -> None:
    uids = _load(archive)
    responses = move(
        archive.port,
        "RECEIVER",
        QueryRetrieveLevel="IMAGE",
        StudyInstanceUID=uids["jpeg_study"],
        SeriesInstanceUID=str(dcmread(JPEG_FILE).SeriesInstanceUID),
        SOPInstanceUID=uids["jpeg"],
    )
    assert responses[-1].Status == 0x0000
    arrived = receiver.received[uids["jpeg"]]
    assert receiver.syntaxes[uids["jpeg"]] in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    assert str(arrived.SOPInstanceUID) == uids["jpeg"]  # the same instance, not a copy
    original = dcmread(JPEG_FILE)
    original.decompress(generate_instance_uid=False)
    assert arrived.PixelData == original.PixelData


def test_unknown_destination_is_a801(archive: RunningServer) -> None:
    uids = _load(archive)
    responses = move(
        archive.port, "NOBODY", QueryRetrieveLevel="STUDY", StudyInstanceUID=uids["study"]
    )
    assert [r.Status for r in responses] == [0xA801]


def test_missing_unique_key_is_a900(archive: RunningServer) -> None:
    responses = move(archive.port, "RECEIVER", QueryRetrieveLevel="SERIES")
    assert responses[-1].Status == 0xA900


def test_dcmtk_movescu_to_storescp(archive: RunningServer, tmp_path: Path) -> None:
    uids = _load(archive)
    remote = next(r for r in archive_remotes(archive) if r["ae_title"] == "STORESCP")
    out = tmp_path / "received"
    out.mkdir()
    storescp = subprocess.Popen(
        ["storescp", "+xa", "-aet", "STORESCP", "-od", str(out), str(remote["port"])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        result = dcmtk(
            "movescu",
            "-v",
            "-S",
            "-aec",
            "PACSNODE",
            "-aem",
            "STORESCP",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={uids['study']}",
            "127.0.0.1",
            str(archive.port),
        )
        assert result.returncode == 0, result.stderr
    finally:
        storescp.terminate()
        storescp.wait(10)
    files = list(out.iterdir())
    assert len(files) == 3
    assert {str(dcmread(f).StudyInstanceUID) for f in files} == {uids["study"]}


def archive_remotes(server: RunningServer) -> list[dict[str, object]]:
    import tomllib

    return list(tomllib.loads(server.config_path.read_text())["remote_ae"])


def test_c_get_on_the_same_association(archive: RunningServer) -> None:
    uids = _load(archive)
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", [ExplicitVRLittleEndian])
    role = build_role("1.2.840.10008.5.1.4.1.1.2", scp_role=True)
    assoc = ae.associate(
        "127.0.0.1",
        archive.port,
        ae_title="PACSNODE",
        ext_neg=[role],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = uids["study"]
    identifier.SeriesInstanceUID = uids["series"]
    statuses = [status for status, _ in assoc.send_c_get(identifier, STUDY_ROOT_GET)]
    assoc.release()
    assert statuses[-1].Status == 0x0000
    assert statuses[-1].NumberOfCompletedSuboperations == 3
    assert sorted(int(ds.InstanceNumber) for ds in received) == [1, 2, 3]


def test_dcmtk_getscu(archive: RunningServer, tmp_path: Path) -> None:
    uids = _load(archive)
    out = tmp_path / "got"
    out.mkdir()
    result = dcmtk(
        "getscu",
        "-v",
        "-S",
        "-aec",
        "PACSNODE",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={uids['study']}",
        "127.0.0.1",
        str(archive.port),
    )
    assert result.returncode == 0, result.stderr
    assert len(list(out.iterdir())) == 3


def test_cdrclient_gets_its_private_tags_back_byte_identical(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """CDRClient: Implicit VR Little Endian only, 16 KiB PDUs, Patient/Study Only model."""
    from conftest import dataset_bytes, save
    from test_storage_scp import schick_dataset

    raw: dict[str, bytes] = {}

    def on_store(event: evt.Event) -> int:
        raw[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset(include_meta=False)
        return 0x0000

    ae = AE(ae_title="CDRCLIENT")
    ae.maximum_pdu_size = 16384
    ae.add_supported_context("1.2.840.10008.5.1.4.1.1.1.3", [ImplicitVRLittleEndian])
    port = free_port()
    scp = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    to_scp = Relay(port)  # both associations measured on the wire
    try:
        server = server_factory(
            remotes=[{"ae_title": "CDRCLIENT", "host": "127.0.0.1", "port": to_scp.port}]
        )
        to_archive = Relay(server.port)
        source = save(schick_dataset(), tmp_path / "schick.dcm")
        assert send_files(server.port, [source], calling_ae="CDRCLIENT")[source].Status == 0
        ds = dcmread(source)
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.PatientID = ds.PatientID
        identifier.StudyInstanceUID = ds.StudyInstanceUID
        move_model = "1.2.840.10008.5.1.4.1.2.3.2"
        assoc = associate(
            to_archive.port, [(move_model, [ImplicitVRLittleEndian])], calling_ae="CDRCLIENT"
        )
        statuses = [s.Status for s, _ in assoc.send_c_move(identifier, "CDRCLIENT", move_model)]
        assoc.release()
        to_archive.close()
    finally:
        to_scp.close()
        scp.shutdown()
    assert statuses[-1] == 0x0000
    assert raw[str(ds.SOPInstanceUID)] == dataset_bytes(source)
    [move], [sub_operations] = to_archive.associations, to_scp.associations
    assert (move.requestor_maximum, sub_operations.acceptor_maximum) == (16384, 16384)
    assert move.oversized() == [] and sub_operations.oversized() == []
    assert sub_operations.to_acceptor, "the C-STORE went elsewhere"


class CountingListener:
    """A TCP port that counts connection attempts and never speaks DICOM."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = int(self.socket.getsockname()[1])

    def attempts(self) -> int:
        count = 0
        with contextlib.suppress(TimeoutError):
            while True:
                connection, _ = self.socket.accept()
                connection.close()
                count += 1
        return count


def test_bad_identifier_is_refused_without_connecting(server_factory: ServerFactory) -> None:
    listener = CountingListener()
    archive = server_factory(
        remotes=[{"ae_title": "LISTENER", "host": "127.0.0.1", "port": listener.port}]
    )
    no_unique_key = move(archive.port, "LISTENER", QueryRetrieveLevel="SERIES")
    bad_level = move(archive.port, "LISTENER", QueryRetrieveLevel="FRAME", StudyInstanceUID="1")
    assert [r.Status for r in no_unique_key] == [0xA900]
    assert "SeriesInstanceUID" in no_unique_key[0].ErrorComment
    assert [r.Status for r in bad_level] == [0xA900]
    assert listener.attempts() == 0


def test_unreachable_destination_is_a702(server_factory: ServerFactory) -> None:
    archive = server_factory(
        remotes=[{"ae_title": "OFFLINE", "host": "127.0.0.1", "port": free_port()}]
    )
    uids = _load(archive)
    responses = move(
        archive.port, "OFFLINE", QueryRetrieveLevel="STUDY", StudyInstanceUID=uids["study"]
    )
    assert [r.Status for r in responses] == [0xA702]
    assert "OFFLINE" in responses[0].ErrorComment
    assert "cannot" in archive.log() or "unreachable" in archive.log()


def test_nothing_selected_is_success_with_zero_counts(archive: RunningServer) -> None:
    responses = move(
        archive.port, "RECEIVER", QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3.4.5"
    )
    assert [r.Status for r in responses] == [0x0000]
    assert responses[0].NumberOfCompletedSuboperations == 0


def test_pending_responses_can_be_switched_off_per_requestor(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    archive = server_factory(
        remotes=[
            {"ae_title": "RECEIVER", "host": "127.0.0.1", "port": receiver.port},
            {"ae_title": "WS", "host": "127.0.0.1", "port": 1, "pending_responses": False},
        ]
    )
    uids = _load(archive)
    responses = move(
        archive.port, "RECEIVER", QueryRetrieveLevel="STUDY", StudyInstanceUID=uids["study"]
    )
    assert [r.Status for r in responses] == [0x0000]
    assert responses[0].NumberOfCompletedSuboperations == 3
    assert len(receiver.received) == 3


def test_pending_counts_and_cancel_during_a_move(
    archive: RunningServer, receiver: Receiver
) -> None:
    study, series = generate_uid(), generate_uid()
    many = [ct_dataset(study=study, series=series, InstanceNumber=n) for n in range(40)]
    assert send_datasets(archive.port, many) == [0] * 40
    slow = threading.Event()

    def slow_store(event: evt.Event) -> int:
        slow.wait(0.05)
        return 0x0000

    receiver.server.unbind(evt.EVT_C_STORE, receiver._store)
    receiver.server.bind(evt.EVT_C_STORE, slow_store)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    assoc = associate(archive.port, [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])])
    responses = []
    for status, _ in assoc.send_c_move(identifier, "RECEIVER", STUDY_ROOT_MOVE, msg_id=7):
        responses.append(status)
        if len(responses) == 3:
            assoc.send_c_cancel(7, query_model=STUDY_ROOT_MOVE)
    assoc.release()
    pending, final = responses[:-1], responses[-1]
    assert [r.NumberOfCompletedSuboperations for r in pending[:3]] == [1, 2, 3]
    assert all(
        r.NumberOfRemainingSuboperations + r.NumberOfCompletedSuboperations == 40 for r in pending
    )
    assert final.Status == 0xFE00
    assert 0 < final.NumberOfRemainingSuboperations < 37
    assert final.NumberOfCompletedSuboperations + final.NumberOfRemainingSuboperations == 40


def test_jpeg_is_decompressed_for_an_implicit_only_receiver(
    server_factory: ServerFactory,
) -> None:
    implicit_only = Receiver([ImplicitVRLittleEndian])
    try:
        archive = server_factory(
            remotes=[{"ae_title": "RECEIVER", "host": "127.0.0.1", "port": implicit_only.port}]
        )
        uids = _load(archive)
        responses = move(
            archive.port,
            "RECEIVER",
            QueryRetrieveLevel="STUDY",
            StudyInstanceUID=uids["jpeg_study"],
        )
    finally:
        implicit_only.server.shutdown()
    assert responses[-1].Status == 0x0000
    assert implicit_only.syntaxes[uids["jpeg"]] == ImplicitVRLittleEndian
    original = dcmread(JPEG_FILE)
    original.decompress(generate_instance_uid=False)
    assert implicit_only.received[uids["jpeg"]].PixelData == original.PixelData


def test_a_move_longer_than_the_network_timeout_completes(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    archive = server_factory(
        remotes=[{"ae_title": "RECEIVER", "host": "127.0.0.1", "port": receiver.port}],
        network_timeout=2,
    )
    study, series = generate_uid(), generate_uid()
    many = [ct_dataset(study=study, series=series, InstanceNumber=n) for n in range(8)]
    assert send_datasets(archive.port, many) == [0] * 8

    def slow_store(event: evt.Event) -> int:
        time.sleep(0.5)
        return 0x0000

    receiver.server.unbind(evt.EVT_C_STORE, receiver._store)
    receiver.server.bind(evt.EVT_C_STORE, slow_store)
    responses = move(archive.port, "RECEIVER", QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
    assert responses[-1].Status == 0x0000
    assert responses[-1].NumberOfCompletedSuboperations == 8
    archive.wait_for_log("WS@")
    assert "Network timeout" not in archive.log()
    assert "aborted" not in archive.log()
