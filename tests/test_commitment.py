"""Storage Commitment Push Model against a real server, pynetdicom as the modality."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import RunningServer, ServerFactory, ct_dataset, free_port, stored_path
from peers import send_datasets, stored_checksum
from pydicom import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from pynetdicom import AE, build_role, evt
from test_iocm import KOS, note

from pacsnode.archive.commitment import Reference
from pacsnode.archive.schema import instance
from pacsnode.dimse.commitment import request_commitment
from pacsnode.dimse.scu import Peer

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
INSTANCE = "1.2.840.10008.1.20.1.1"


class ReportListener:
    """The modality's own SCP, taking N-EVENT-REPORTs on associations we did not open."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.reports: list[tuple[int, Dataset, str]] = []
        self.arrived = threading.Event()
        ae = AE(ae_title="MODALITY")
        ae.add_supported_context(STORAGE_COMMITMENT, scu_role=True, scp_role=True)
        self.ae = ae
        self.server: object | None = None

    def start(self) -> ReportListener:
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)],
        )
        return self

    def _on_report(self, event: evt.Event) -> tuple[int, None]:
        calling = event.assoc.requestor.ae_title
        self.reports.append((int(event.event_type), event.event_information, calling))
        self.arrived.set()
        return 0x0000, None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
def listener() -> Iterator[ReportListener]:
    running = ReportListener().start()
    yield running
    running.stop()


def stored(server: RunningServer, count: int = 2) -> list[Dataset]:
    datasets = [ct_dataset(InstanceNumber=n) for n in range(count)]
    assert send_datasets(server.port, datasets) == [0] * count
    return datasets


def action(references: list[tuple[str, str]]) -> Dataset:
    info = Dataset()
    info.TransactionUID = generate_uid()
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    info.ReferencedSOPSequence = items
    return info


def commit_on_same_association(
    port: int, info: Dataset, wait: float = 10.0
) -> tuple[int, list[tuple[int, Dataset]]]:
    """N-ACTION, then wait on the same association; (N-ACTION status, reports)."""
    reports: list[tuple[int, Dataset]] = []
    arrived = threading.Event()
    serving: list[threading.Thread] = []

    def on_report(event: evt.Event) -> tuple[int, None]:
        serving.append(threading.current_thread())
        reports.append((int(event.event_type), event.event_information))
        arrived.set()
        return 0x0000, None

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(STORAGE_COMMITMENT)
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="PACSNODE",
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
    )
    assert assoc.is_established
    status, _ = assoc.send_n_action(info, 1, STORAGE_COMMITMENT, INSTANCE)
    arrived.wait(wait)
    # pynetdicom answers a report on a thread that, once done, marks the association's
    # thread as running: a release() begun before that would wait for it forever.
    for thread in serving:
        thread.join(wait)
    assoc.release()
    return int(status.Status), reports


def reasons(report: Dataset) -> dict[str, int]:
    return {
        str(item.ReferencedSOPInstanceUID): int(item.FailureReason)
        for item in report.get("FailedSOPSequence", [])
    }


def committed(report: Dataset) -> set[str]:
    return {str(item.ReferencedSOPInstanceUID) for item in report.get("ReferencedSOPSequence", [])}


def test_all_committed_is_event_type_1_on_the_same_association(server: RunningServer) -> None:
    datasets = stored(server)
    info = action([(CTImageStorage, str(ds.SOPInstanceUID)) for ds in datasets])
    status, reports = commit_on_same_association(server.port, info)
    assert status == 0x0000
    [(event_type, report)] = reports
    assert event_type == 1
    assert report.TransactionUID == info.TransactionUID
    assert report.RetrieveAETitle == "PACSNODE"
    assert committed(report) == {str(ds.SOPInstanceUID) for ds in datasets}
    assert "FailedSOPSequence" not in report


def test_failures_carry_their_reasons(server: RunningServer) -> None:
    good, damaged, wrong_class = stored(server, 3)
    path = stored_path(server, str(damaged.SOPInstanceUID))
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF  # one flipped bit in the pixel data
    path.write_bytes(bytes(content))
    unknown = generate_uid()
    info = action(
        [
            (CTImageStorage, str(good.SOPInstanceUID)),
            (CTImageStorage, str(damaged.SOPInstanceUID)),
            (MRImageStorage, str(wrong_class.SOPInstanceUID)),
            (CTImageStorage, unknown),
        ]
    )
    status, [(event_type, report)] = commit_on_same_association(server.port, info)
    assert (status, event_type) == (0x0000, 2)
    assert committed(report) == {str(good.SOPInstanceUID)}
    assert reasons(report) == {
        str(damaged.SOPInstanceUID): 0x0110,
        str(wrong_class.SOPInstanceUID): 0x0119,
        unknown: 0x0112,
    }


def test_new_files_carry_xxh3_and_files_indexed_with_sha256_are_checked_with_it(
    server: RunningServer,
) -> None:
    """Files received before checksums became XXH3-128 hold a SHA-256 in the index:
    commitment checks each file with its own algorithm."""
    fresh, legacy, legacy_damaged = stored(server, 3)
    expected = stored_checksum(stored_path(server, str(fresh.SOPInstanceUID)).read_bytes())
    sha256 = {
        str(ds.SOPInstanceUID): hashlib.sha256(
            stored_path(server, str(ds.SOPInstanceUID)).read_bytes()
        ).hexdigest()
        for ds in (legacy, legacy_damaged)
    }
    archive = server.archive()
    try:
        found = archive.index.find_instance(str(fresh.SOPInstanceUID))
        assert found is not None and found.checksum == expected
        with archive.index.writing() as connection:
            for uid, checksum in sha256.items():
                connection.execute(
                    sa.update(instance)
                    .where(instance.c.sop_instance_uid == uid)
                    .values(checksum=checksum)
                )
    finally:
        archive.close()
    path = stored_path(server, str(legacy_damaged.SOPInstanceUID))
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF
    path.write_bytes(bytes(content))
    uids = [str(ds.SOPInstanceUID) for ds in (fresh, legacy, legacy_damaged)]
    info = action([(CTImageStorage, uid) for uid in uids])
    status, [(event_type, report)] = commit_on_same_association(server.port, info)
    assert (status, event_type) == (0x0000, 2)
    assert committed(report) == set(uids[:2])
    assert reasons(report) == {uids[2]: 0x0110}


def test_a_rejection_note_is_committed_though_hidden_and_what_it_rejects_is_not(
    server: RunningServer,
) -> None:
    """synedra (digest-002 item 37): soft-deleted instances are not committed; the IOCM
    rejection note itself is, while it stays hidden from queries."""
    kept, rejected = stored(server)
    study = str(rejected.StudyInstanceUID)
    rejection = note("113001", study, [rejected])
    assert send_datasets(server.port, [rejection]) == [0]
    info = action(
        [
            (CTImageStorage, str(kept.SOPInstanceUID)),
            (CTImageStorage, str(rejected.SOPInstanceUID)),
            (KOS, str(rejection.SOPInstanceUID)),
        ]
    )
    status, [(event_type, report)] = commit_on_same_association(server.port, info)
    assert (status, event_type) == (0x0000, 2)
    assert committed(report) == {str(kept.SOPInstanceUID), str(rejection.SOPInstanceUID)}
    assert reasons(report) == {str(rejected.SOPInstanceUID): 0x0112}
    archive = server.archive()
    try:
        hidden = archive.index.find_instance(str(rejection.SOPInstanceUID))
        assert hidden is not None and hidden.rejection == "113001"  # hidden from queries
    finally:
        archive.close()


def test_a_request_without_transaction_uid_is_refused(server: RunningServer) -> None:
    info = action([(CTImageStorage, generate_uid())])
    del info.TransactionUID
    status, reports = commit_on_same_association(server.port, info, wait=1.0)
    assert status == 0x0120
    assert reports == []


def modality(listener: ReportListener, mode: str) -> dict[str, object]:
    return {
        "ae_title": "MODALITY",
        "host": "127.0.0.1",
        "port": listener.port,
        "commitment_report": mode,
    }


def test_new_association_mode_reports_to_the_configured_address(
    server_factory: ServerFactory, listener: ReportListener
) -> None:
    server = server_factory(remotes=[modality(listener, "new")])
    datasets = stored(server)
    info = action([(CTImageStorage, str(ds.SOPInstanceUID)) for ds in datasets])
    status, same = commit_on_same_association(server.port, info, wait=1.0)
    assert (status, same) == (0x0000, [])
    assert listener.arrived.wait(10)
    [(event_type, report, calling_ae)] = listener.reports
    assert event_type == 1
    assert calling_ae == "PACSNODE"  # the called AE title of the request
    assert committed(report) == {str(ds.SOPInstanceUID) for ds in datasets}


def test_a_requester_that_went_away_gets_its_report_later(
    server_factory: ServerFactory,
) -> None:
    absent = ReportListener()
    server = server_factory(remotes=[modality(absent, "new")], job_retry_delay=0.3)
    datasets = stored(server, 1)
    info = action([(CTImageStorage, str(datasets[0].SOPInstanceUID))])
    assert commit_on_same_association(server.port, info, wait=0.5)[0] == 0x0000
    server.wait_for_log("will retry")
    absent.start()
    try:
        assert absent.arrived.wait(15)
        assert absent.reports[0][1].TransactionUID == info.TransactionUID
    finally:
        absent.stop()


def test_a_queued_report_survives_a_restart(server_factory: ServerFactory) -> None:
    absent = ReportListener()
    server = server_factory(remotes=[modality(absent, "new")], job_retry_delay=60)
    datasets = stored(server, 1)
    info = action([(CTImageStorage, str(datasets[0].SOPInstanceUID))])
    assert commit_on_same_association(server.port, info, wait=0.5)[0] == 0x0000
    server.wait_for_log("will retry")
    server.stop()
    absent.start()
    try:
        server.extra_args = []
        restarted = server_factory(
            remotes=[modality(absent, "new")],
            data_dir=server.data_dir,
            dicom_port=server.port,
            job_retry_delay=0.3,
            start=False,
        )
        restarted.start()
        retry_now(restarted)
        assert absent.arrived.wait(15)
        assert absent.reports[0][1].TransactionUID == info.TransactionUID
    finally:
        absent.stop()


def retry_now(server: RunningServer) -> None:
    """Make the one waiting job due now, as an administrator would with 'jobs retry'."""
    from pacsnode.jobs.queue import JobQueue

    archive = server.archive()
    try:
        queue = JobQueue(archive.database)
        for job in queue.list("pending"):
            queue.retry(job.pk)
    finally:
        archive.close()


def test_scu_side_requests_commitment_from_a_remote_archive(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    listen_port = free_port()
    server = server_factory(
        remotes=[
            {
                "ae_title": "REQUESTER",
                "host": "127.0.0.1",
                "port": listen_port,
                "commitment_report": "new",
            }
        ]
    )
    datasets = stored(server, 2)
    peer = Peer("127.0.0.1", server.port, "PACSNODE", "REQUESTER")
    refs = [Reference(CTImageStorage, str(ds.SOPInstanceUID)) for ds in datasets]
    refs.append(Reference(CTImageStorage, generate_uid()))
    result = request_commitment(peer, refs, timeout=15, listen_port=listen_port)
    assert result.event_type == 2
    assert committed(result.information) == {str(ds.SOPInstanceUID) for ds in datasets}
    assert set(reasons(result.information).values()) == {0x0112}

    same_peer = Peer("127.0.0.1", server.port, "PACSNODE", "ELSEWHERE")
    result = request_commitment(same_peer, refs[:2], timeout=15)
    assert result.event_type == 1


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """DICOM and HTTP ports for a local Orthanc (the Debian package) to run on."""
    if shutil.which("Orthanc") is None:
        pytest.fail("Orthanc is not installed (make test installs it as root)")
    dicom_port, http_port = free_port(), free_port()
    yield dicom_port, http_port


def test_orthanc_as_an_independent_storage_commitment_scu(
    server_factory: ServerFactory, orthanc: tuple[int, int], tmp_path: Path
) -> None:
    dicom_port, http_port = orthanc
    server = server_factory(
        remotes=[{"ae_title": "ORTHANC", "host": "127.0.0.1", "port": dicom_port}]
    )
    config = {
        "Name": "commitment-scu",
        "StorageDirectory": str(tmp_path / "orthanc-db"),
        "IndexDirectory": str(tmp_path / "orthanc-db"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomModalities": {"pacs": ["PACSNODE", "127.0.0.1", server.port]},
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    log = (tmp_path / "orthanc.log").open("wb")
    process = subprocess.Popen(["Orthanc", str(tmp_path / "orthanc.json")], stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/system").raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "Orthanc did not start"
                time.sleep(0.2)
        datasets = stored(server, 2)
        missing = generate_uid()
        instances = [[CTImageStorage, str(ds.SOPInstanceUID)] for ds in datasets]
        instances.append([CTImageStorage, missing])
        job = httpx.post(
            f"{base}/modalities/pacs/storage-commitment",
            json={"DicomInstances": instances, "Timeout": 30},
            timeout=60,
        ).json()
        deadline = time.monotonic() + 30
        while (report := httpx.get(f"{base}{job['Path']}").json())["Status"] == "Pending":
            assert time.monotonic() < deadline, "no report reached Orthanc"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    assert report["Status"] == "Failure"  # one of the three is not here
    assert {item["SOPInstanceUID"] for item in report["Success"]} == {
        str(ds.SOPInstanceUID) for ds in datasets
    }
    assert [(item["SOPInstanceUID"], item["FailureReason"]) for item in report["Failures"]] == [
        (missing, 0x0112)
    ]


def test_reports_from_a_remote_archive_are_taken_on_a_new_association(
    server: RunningServer,
) -> None:
    ae = AE(ae_title="ARCHIVE2")
    ae.add_requested_context(STORAGE_COMMITMENT)
    role = build_role(STORAGE_COMMITMENT, scp_role=True)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="PACSNODE", ext_neg=[role])
    assert assoc.is_established
    info = action([(CTImageStorage, generate_uid())])
    status, _ = assoc.send_n_event_report(info, 1, STORAGE_COMMITMENT, INSTANCE)
    assoc.release()
    assert status.Status == 0x0000
    assert f"storage commitment report {info.TransactionUID} from ARCHIVE2" in server.log()


def test_commit_command(server: RunningServer, tmp_path: Path) -> None:
    datasets = stored(server, 2)
    files = []
    for ds in datasets:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(str(path))
    command = [sys.executable, "-m", "pacsnode", "commit", "127.0.0.1", str(server.port)]
    command += ["--called-ae", "PACSNODE", "--calling-ae", "WS1", "--timeout", "20"]
    environment = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([*command, *files], capture_output=True, text=True, env=environment)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("committed") == 2
    study = str(datasets[0].StudyInstanceUID)
    config = ["--config", str(server.config_path)]
    run = subprocess.run([*command, "--study", study, *config], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    missing = tmp_path / "missing.dcm"
    ct_dataset().save_as(missing, enforce_file_format=True)
    run = subprocess.run([*command, str(missing)], capture_output=True, text=True, env=environment)
    assert run.returncode == 1
    assert "failed 0x0112" in run.stdout
