"""Federation against real foreign archives: C-FIND spanning to DCMTK dcmqrscp and
Orthanc, C-MOVE spanning through pacsnode to dcmqrscp, and federated QIDO-RS."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port, save, write_config
from peers import Orthanc, associate, dcmtk, orthanc, send_datasets, wait_for_echo
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.events import Event

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_TAG = "0020000D"

DCMQRSCP_CONFIG = """\
NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16

HostTable BEGIN
storescp = (STORESCP, 127.0.0.1, {storescp_port})
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
DCMQRSCP {storage} R (100, 1024mb) ANY
AETable END
"""


class Federation(NamedTuple):
    pacsnode: RunningServer
    studies: dict[str, str]
    """Name to Study Instance UID: ``local``, ``both`` (here and on dcmqrscp),
    ``dcmqrscp`` and ``orthanc``."""
    received: Path
    """Where the C-MOVE destination (DCMTK storescp) writes what it receives."""


def _study(folder: Path, patient_id: str, instances: int) -> tuple[str, list[Path]]:
    """A study of ``instances`` CT images, saved as files."""
    first = ct_dataset(patient_id=patient_id, patient_name=f"{patient_id}^TEST")
    paths = []
    for number in range(instances):
        ds = ct_dataset(
            study=str(first.StudyInstanceUID),
            series=str(first.SeriesInstanceUID),
            patient_id=patient_id,
            patient_name=f"{patient_id}^TEST",
            InstanceNumber=number + 1,
        )
        paths.append(save(ds, folder / f"{ds.SOPInstanceUID}.dcm"))
    return str(first.StudyInstanceUID), paths


def _start(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(20)


def _fill_orthanc(peer: Orthanc, files: list[Path]) -> None:
    for path in files:
        httpx.post(f"{peer.url}/instances", content=path.read_bytes()).raise_for_status()


def _start_dcmqrscp(base: Path, files: list[Path], storescp_port: int) -> tuple[Popen, int]:
    storage = base / "storage"
    storage.mkdir()
    port = free_port()
    config = base / "dcmqrscp.cfg"
    config.write_text(
        DCMQRSCP_CONFIG.format(port=port, storage=storage, storescp_port=storescp_port)
    )
    indexed = dcmtk("dcmqridx", str(storage), *map(str, files))
    assert indexed.returncode == 0, indexed.stderr
    process = _start(["dcmqrscp", "-c", str(config), str(port)], base / "dcmqrscp.log")
    wait_for_echo(port, "DCMQRSCP", process)
    return process, port


Popen = subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """pacsnode spanning to dcmqrscp, Orthanc and a node that is down."""
    root = tmp_path_factory.mktemp("spanning")
    files = root / "files"
    files.mkdir()
    studies: dict[str, str] = {}
    studies["local"], local_files = _study(files, "SPAN_L", 2)
    studies["both"], both_files = _study(files, "SPAN_B", 2)
    studies["dcmqrscp"], dcmqrscp_files = _study(files, "SPAN_D", 3)
    studies["orthanc"], orthanc_files = _study(files, "SPAN_O", 1)
    received = root / "received"
    received.mkdir()
    storescp_port = free_port()
    processes: list[Popen] = []
    try:
        processes.append(
            _start(
                ["storescp", "-aet", "STORESCP", "-od", str(received), str(storescp_port)],
                root / "storescp.log",
            )
        )
        qr, qr_port = _start_dcmqrscp(root, [*both_files, *dcmqrscp_files], storescp_port)
        processes.append(qr)
        ports = (free_port(), free_port())
        with orthanc(root, {}, *ports, DicomAlwaysAllowFind=True) as remote:
            _fill_orthanc(remote, orthanc_files)
            pacsnode = _start_pacsnode(root, qr_port, remote.dicom_port)
            try:
                statuses = send_datasets(pacsnode.port, map(dcmread, [*local_files, *both_files]))
                assert set(statuses) == {0}
                yield Federation(pacsnode, studies, received)
            finally:
                pacsnode.kill()
    finally:
        for process in processes:
            _stop(process)


def _start_pacsnode(root: Path, qr_port: int, orthanc_port: int) -> RunningServer:
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": free_port(),
        "http_port": free_port(),
        "data_dir": str(root / "data"),
        "bind_address": "127.0.0.1",
        "find_spanning": ["DCMQRSCP", "ORTHANC", "DOWN"],
        "move_spanning": True,
        "acse_timeout": 5,
    }
    remotes = [
        {"ae_title": "DCMQRSCP", "host": "127.0.0.1", "port": qr_port},
        {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc_port},
        {"ae_title": "DOWN", "host": "127.0.0.1", "port": free_port()},
    ]
    config = write_config(root / "pacsnode.toml", settings, remotes)
    return RunningServer(
        config,
        root / "data",
        settings["dicom_port"],
        "PACSNODE",
        root / "pacsnode.log",
        f"sqlite:///{(root / 'data' / 'index.sqlite').resolve()}",
        settings["http_port"],
    ).start()


def _find(
    port: int, model: str, query: Dataset, calling_ae: str = "WORKSTATION"
) -> tuple[list[Dataset], int]:
    assoc = associate(port, [(model, [ExplicitVRLittleEndian])], calling_ae)
    assert assoc.is_established
    answers: list[Dataset] = []
    final = -1
    try:
        for status, answer in assoc.send_c_find(query, model):
            assert status is not None and "Status" in status, "no C-FIND response"
            if status.Status in (0xFF00, 0xFF01):
                answers.append(answer)
            else:
                final = int(status.Status)
    finally:
        assoc.release()
    return answers, final


def _study_query() -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "SPAN_*"
    query.StudyInstanceUID = ""
    query.RetrieveAETitle = ""
    return query


def test_find_answers_local_first_then_remote_without_duplicates(
    federation: Federation,
) -> None:
    answers, final = _find(federation.pacsnode.port, STUDY_ROOT_FIND, _study_query())
    assert final == 0x0000  # although DOWN is not there
    studies = federation.studies
    uids = [str(answer.StudyInstanceUID) for answer in answers]
    assert sorted(uids) == sorted(studies.values())  # "both" once
    local = {studies["local"], studies["both"]}
    assert set(uids[:2]) == local
    sources = {str(a.StudyInstanceUID): str(a.RetrieveAETitle).strip() for a in answers}
    assert sources[studies["local"]] == sources[studies["both"]] == "PACSNODE"
    assert sources[studies["dcmqrscp"]] == "DCMQRSCP"  # remote answers go out as received
    assert sources[studies["orthanc"]] == ""  # Orthanc leaves it empty
    log = federation.pacsnode.log()
    assert "C-FIND spanning to DOWN failed" in log


def test_find_spans_in_the_model_it_was_asked_in(federation: Federation) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "SPAN_*"
    answers, final = _find(federation.pacsnode.port, PATIENT_ROOT_FIND, query)
    assert final == 0x0000
    patients = [str(answer.PatientID) for answer in answers]
    assert sorted(patients) == ["SPAN_B", "SPAN_D", "SPAN_L", "SPAN_O"]


def test_find_from_a_spanning_target_is_answered_locally(federation: Federation) -> None:
    answers, final = _find(
        federation.pacsnode.port, STUDY_ROOT_FIND, _study_query(), calling_ae="DCMQRSCP"
    )
    assert final == 0x0000
    studies = federation.studies
    assert {str(a.StudyInstanceUID) for a in answers} == {studies["local"], studies["both"]}


def test_move_called_as_a_remote_is_forwarded_to_it(federation: Federation) -> None:
    study = federation.studies["dcmqrscp"]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    assoc = associate(
        federation.pacsnode.port,
        [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])],
        calling_ae="WORKSTATION",
        called_ae="DCMQRSCP",
    )
    assert assoc.is_established
    try:
        responses = [status for status, _ in assoc.send_c_move(query, "STORESCP", STUDY_ROOT_MOVE)]
    finally:
        assoc.release()
    final = responses[-1]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 3
    assert all(r.Status == 0xFF00 for r in responses[:-1])
    received = {str(dcmread(p).StudyInstanceUID) for p in federation.received.iterdir()}
    assert received == {study}
    assert len(list(federation.received.iterdir())) == 3
    assert "C-MOVE from WORKSTATION forwarded to DCMQRSCP" in federation.pacsnode.log()


def test_federated_qido_returns_remote_studies_too(federation: Federation) -> None:
    url = f"{federation.pacsnode.url}/dicom-web/studies"
    local = httpx.get(url, params={"PatientID": "SPAN_*"}, timeout=60).json()
    studies = federation.studies
    assert {a[STUDY_TAG]["Value"][0] for a in local} == {studies["local"], studies["both"]}
    params = {"PatientID": "SPAN_*", "federated": "true"}
    answers = httpx.get(url, params=params, timeout=60).json()
    uids = [answer[STUDY_TAG]["Value"][0] for answer in answers]
    assert sorted(uids) == sorted(studies.values())
    assert set(uids[:2]) == {studies["local"], studies["both"]}
    orthanc = next(a for a in answers if a[STUDY_TAG]["Value"][0] == studies["orthanc"])
    assert orthanc["00100020"]["Value"] == ["SPAN_O"]


@pytest.fixture
def slow_archive() -> Iterator[tuple[int, threading.Event]]:
    """A Q/R SCP that answers once, then holds its C-FIND open until it is cancelled."""
    cancelled = threading.Event()

    def handle_find(event: Event) -> Iterator[tuple[int, Dataset | None]]:
        answer = Dataset()
        answer.QueryRetrieveLevel = "STUDY"
        answer.StudyInstanceUID = "1.2.3.4"
        yield 0xFF00, answer
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if event.is_cancelled:  # true once per C-CANCEL
                cancelled.set()
                break
            time.sleep(0.05)
        yield 0xFE00, None

    ae = AE(ae_title="SLOW")
    ae.add_supported_context(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, handle_find)]
    )
    try:
        yield port, cancelled
    finally:
        server.shutdown()


def test_cancel_stops_the_remote_searches(
    server_factory: ServerFactory, slow_archive: tuple[int, threading.Event]
) -> None:
    port, remote_cancelled = slow_archive
    server = server_factory(
        find_spanning=["SLOW"], remotes=[{"ae_title": "SLOW", "host": "127.0.0.1", "port": port}]
    )
    assoc = associate(server.port, [(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])])
    assert assoc.is_established
    statuses = []
    try:
        for status, _ in assoc.send_c_find(_study_query(), STUDY_ROOT_FIND):
            statuses.append(int(status.Status))
            if status.Status == 0xFF00:  # the slow archive's answer has come through
                assoc.send_c_cancel(1, query_model=STUDY_ROOT_FIND)
    finally:
        assoc.release()
    assert statuses == [0xFF00, 0xFE00]
    assert remote_cancelled.wait(10), "the remote C-FIND was not cancelled"
