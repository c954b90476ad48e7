"""``pacsnode find/move/get/mpps/worklist find/store`` against real peers: a pacsnode
server, DCMTK's dcmqrscp and storescp. What is checked is what a script would read:
the printed table, JSON and CSV, the received files' bytes, and the exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import (
    RunningServer,
    ct_dataset,
    dataset_bytes,
    free_port,
    save,
    stored_path,
    write_config,
)
from peers import dcmtk, dcmtk_server, orthanc, pacsnode_cli, send_files
from pydicom import dcmread
from pydicom.uid import RLELossless, generate_uid
from test_qr_clients import DCMQRSCP_CONFIG
from typer.testing import CliRunner

from pacsnode.cli import app
from pacsnode.config import Settings
from pacsnode.dimse.query_scu import MoveResult, QueryFailed, find, get, move
from pacsnode.dimse.scu import AssociationFailed, Peer
from pacsnode.dimse.storage import SpoolFile

STUDY_A, STUDY_B = generate_uid(), generate_uid()
SERIES_CT, SERIES_MR, SERIES_B = generate_uid(), generate_uid(), generate_uid()


class Node:
    """The module's pacsnode, what it holds, and where its C-MOVE destination listens."""

    def __init__(self, server: RunningServer, files: list[Path], storescp_port: int) -> None:
        self.server = server
        self.files = files
        self.storescp_port = storescp_port

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command toward this node, as the calling AE ``ADMIN``."""
        command, *rest = args
        return pacsnode_cli(
            *command.split(), "127.0.0.1", str(self.server.port), "-aec", "PACSNODE", *rest
        )


def corpus(folder: Path) -> list[Path]:
    """Two patients, two studies; the first with a CT series of two and an MR of one."""
    datasets = [
        ct_dataset(study=STUDY_A, series=SERIES_CT, InstanceNumber=1, SeriesNumber=1),
        ct_dataset(study=STUDY_A, series=SERIES_CT, InstanceNumber=2, SeriesNumber=1),
        ct_dataset(study=STUDY_A, series=SERIES_MR, modality="MR", SeriesNumber=2),
        ct_dataset(
            study=STUDY_B,
            series=SERIES_B,
            patient_id="PAT002",
            patient_name="ROE^JANE",
            AccessionNumber="ACC002",
            StudyDate="20250301",
            SeriesNumber=1,
        ),
    ]
    return [save(ds, folder / f"{ds.SOPInstanceUID}.dcm") for ds in datasets]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("scu")
    storescp_port = free_port()
    data = base / "data"
    port, http_port = free_port(), free_port()
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": port,
        "http_port": http_port,
        "data_dir": str(data),
        "bind_address": "127.0.0.1",
    }
    remotes = [{"ae_title": "STORESCP", "host": "127.0.0.1", "port": storescp_port}]
    config = write_config(base / "pacsnode.toml", settings, remotes)
    server = RunningServer(
        config,
        data,
        port,
        "PACSNODE",
        base / "pacsnode.log",
        Settings(data_dir=data).resolved_database_url,
        http_port,
    )
    files = corpus(base)
    try:
        server.start()
        assert all(r is not None and r.Status == 0 for r in send_files(port, files).values())
        yield Node(server, files, storescp_port)
    finally:
        server.kill()


def rows(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


# --- find --------------------------------------------------------------------------------


def test_find_patients_as_csv(node: Node) -> None:
    done = node.cli("find", "--model", "patient", "--level", "PATIENT", "-f", "csv")
    assert done.returncode == 0, done.stderr
    found = {row["PatientID"]: row["PatientName"] for row in rows(done.stdout)}
    assert found == {"PAT001": "DOE^JOHN", "PAT002": "ROE^JANE"}


def test_find_studies_as_dicom_json_with_a_range_and_a_return_key(node: Node) -> None:
    done = node.cli("find", "-k", "StudyDate=2026-", "-k", "ReferringPhysicianName", "-f", "json")
    assert done.returncode == 0, done.stderr
    matches = json.loads(done.stdout)
    assert [m["0020000D"]["Value"] for m in matches] == [[STUDY_A]]
    assert matches[0]["00080061"]["Value"] == ["CT", "MR"]  # Modalities in Study
    assert "00080090" in matches[0]  # the return key, empty
    assert matches[0]["00201208"]["Value"] == [3]  # Number of Study Related Instances


def test_find_series_as_a_table(node: Node) -> None:
    done = node.cli("find", "--level", "series", "-k", f"StudyInstanceUID={STUDY_A}")
    assert done.returncode == 0, done.stderr
    assert "2 matches" in done.stdout
    assert SERIES_CT in done.stdout and SERIES_MR in done.stdout
    assert SERIES_B not in done.stdout


def test_find_images_in_the_patient_root_model(node: Node) -> None:
    done = node.cli(
        "find",
        *("--model", "patient", "--level", "IMAGE", "-f", "csv"),
        *("-k", "PatientID=PAT001", "-k", f"StudyInstanceUID={STUDY_A}"),
        *("-k", f"SeriesInstanceUID={SERIES_CT}"),
    )
    assert done.returncode == 0, done.stderr
    assert sorted(row["InstanceNumber"] for row in rows(done.stdout)) == ["1", "2"]


def test_tree_walks_patient_study_series_image(node: Node) -> None:
    done = node.cli("find", "--model", "patient", "--tree")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    depth = [line.split()[0] for line in lines]
    assert depth.count("PATIENT") == 2 and depth.count("STUDY") == 2
    assert depth.count("SERIES") == 3 and depth.count("IMAGE") == 4
    assert all(line.startswith("      IMAGE") for line in lines if "IMAGE" in line)
    # a key filters its own level: both studies, and only their MR series
    one = node.cli("find", "--model", "study", "--tree", "--level", "SERIES", "-k", "Modality=MR")
    assert one.returncode == 0, one.stderr
    depth = [line.split()[0] for line in one.stdout.splitlines()]
    assert (depth.count("STUDY"), depth.count("SERIES")) == (2, 1)
    assert SERIES_MR in one.stdout and "IMAGE" not in depth


def test_library_find_raises_a_failure_status(node: Node) -> None:
    peer = Peer("127.0.0.1", node.server.port, "PACSNODE", "ADMIN")
    # Patient Root at STUDY level without the patient's unique key, unrelationally
    with pytest.raises(QueryFailed) as failed:
        list(find(peer, "patient", "STUDY", {"StudyInstanceUID": ""}))
    assert failed.value.status == 0xA900 and failed.value.comment
    assert node.cli("find", "--model", "patient").returncode == 1


# --- exit codes --------------------------------------------------------------------------


def test_exit_codes(node: Node, tmp_path: Path) -> None:
    """In process (the same code as the command, without a second's start-up each)."""
    runner = CliRunner()

    def code(*args: str) -> int:
        return runner.invoke(app, list(args)).exit_code

    here = ("127.0.0.1", str(node.server.port), "-aec", "PACSNODE")
    closed = ("127.0.0.1", str(free_port()))
    assert code("find", *closed) == 2
    assert code("move", *closed, "X", "-k", "StudyInstanceUID=1") == 2
    assert code("get", *closed, "--out", str(tmp_path), "-k", "StudyInstanceUID=1") == 2
    assert code("mpps", "create", *closed) == 2
    assert code("worklist", "find", *closed) == 2
    assert code("find", *here, "--model", "study", "--level", "PATIENT") == 2
    assert code("find", *here, "-k", "NoSuchKeyword=1") == 2
    assert code("find", *here, "-k", "NumberOfFrames=many") == 2
    unknown = runner.invoke(app, ["move", *here, "NOWHERE", "-k", f"StudyInstanceUID={STUDY_A}"])
    assert unknown.exit_code == 1
    assert "0xA801" in unknown.stdout
    for command in ("find", "move", "get", "worklist find", "mpps create", "mpps set", "store"):
        assert "Exit code" in runner.invoke(app, [*command.split(), "--help"]).stdout


# --- move and get ------------------------------------------------------------------------


@pytest.fixture
def storescp(node: Node, tmp_path: Path) -> Iterator[Path]:
    """DCMTK's storescp as the C-MOVE destination; yields the folder it writes into."""
    out = tmp_path / "received"
    out.mkdir()
    command = ["storescp", "-aet", "STORESCP", "-od", str(out), str(node.storescp_port)]
    with dcmtk_server(command, node.storescp_port, "STORESCP"):
        yield out


def by_uid(folder: Path) -> dict[str, bytes]:
    """The received files' data sets by SOP Instance UID."""
    return {
        str(dcmread(path, stop_before_pixels=True).SOPInstanceUID): dataset_bytes(path)
        for path in folder.iterdir()
    }


def test_move_a_study_arrives_byte_for_byte(node: Node, storescp: Path) -> None:
    done = node.cli("move", "STORESCP", "-k", f"StudyInstanceUID={STUDY_A}")
    assert done.returncode == 0, done.stderr
    assert "3 completed, 0 failed" in done.stdout
    received = by_uid(storescp)
    expected = {uid: dataset_bytes(stored_path(node.server, uid)) for uid in received}
    assert len(received) == 3 and received == expected


def test_library_move_reports_progress(node: Node, storescp: Path) -> None:
    peer = Peer("127.0.0.1", node.server.port, "PACSNODE", "ADMIN")
    pending: list[MoveResult] = []
    keys = {"StudyInstanceUID": STUDY_A, "SeriesInstanceUID": SERIES_CT}
    result = move(peer, "study", "SERIES", keys, "STORESCP", pending.append)
    assert result.ok and result.completed == 2
    assert pending and all(p.completed + (p.remaining or 0) == 2 for p in pending)


def test_get_writes_part10_files_named_by_uid(node: Node, tmp_path: Path) -> None:
    out = tmp_path / "got"
    done = node.cli("get", "--out", str(out), "-k", f"StudyInstanceUID={STUDY_B}")
    assert done.returncode == 0, done.stderr
    [path] = out.iterdir()
    uid = str(dcmread(path).SOPInstanceUID)
    assert path.name == f"{uid}.dcm"
    assert dataset_bytes(path) == dataset_bytes(stored_path(node.server, uid))


def test_library_get_hands_each_instance_to_the_caller(node: Node, tmp_path: Path) -> None:
    peer = Peer("127.0.0.1", node.server.port, "PACSNODE", "ADMIN")
    seen: list[str] = []

    def keep(spooled: SpoolFile) -> int:
        assert dcmread(spooled.path).SOPInstanceUID == spooled.sop_instance  # a whole file
        seen.append(spooled.sop_instance)
        return 0xA700 if len(seen) == 1 else 0x0000  # refuse the first one

    result = get(peer, "study", "STUDY", {"StudyInstanceUID": STUDY_A}, keep, tmp_path)
    assert len(seen) == 3
    assert (result.completed, result.failed, result.status) == (2, 1, 0xB000)
    assert result.failed_sop_instance_uids == seen[:1]
    assert not list(tmp_path.iterdir())  # every spool file gone once handed over
    with pytest.raises(AssociationFailed):
        no_one = Peer("127.0.0.1", free_port())
        get(no_one, "study", "STUDY", {"StudyInstanceUID": "1"}, keep, tmp_path)


# --- worklist and MPPS -------------------------------------------------------------------


def test_worklist_find_against_our_own_worklist(node: Node) -> None:
    config = str(node.server.config_path)
    for name, modality in (("WL^ONE", "MR"), ("WL^TWO", "CT")):
        added = pacsnode_cli(
            *("worklist", "add", "--config", config, "--patient-name", name),
            *("--patient-id", name[-3:], "--modality", modality, "--station-ae", "SCANNER"),
        )
        assert added.returncode == 0, added.stderr
    done = node.cli("worklist find", "-k", "Modality=MR", "-f", "csv")
    assert done.returncode == 0, done.stderr
    found = rows(done.stdout)
    assert [(r["PatientName"], r["ScheduledProcedureStepSequence.Modality"]) for r in found] == [
        ("WL^ONE", "MR")
    ]
    also = node.cli("find", "--model", "mwl", "-k", "ScheduledStationAETitle=SCANNER", "-f", "json")
    assert len(json.loads(also.stdout)) == 2


def test_mpps_create_then_complete(node: Node) -> None:
    created = node.cli(
        "mpps create", "-k", "PatientName=MPPS^TEST", "-k", "PerformedProcedureStepID=PPS7"
    )
    assert created.returncode == 0, created.stderr
    uid = created.stdout.split()[1]
    step = httpx.get(f"{node.server.url}/api/mpps/{uid}").json()
    assert step["status"] == "IN PROGRESS"
    assert step["dataset"]["00400253"]["Value"] == ["PPS7"]
    done = node.cli("mpps set", uid, "--status", "completed")
    assert done.returncode == 0, done.stderr
    step = httpx.get(f"{node.server.url}/api/mpps/{uid}").json()
    assert step["status"] == "COMPLETED" and "00400251" in step["dataset"]  # end time
    again = node.cli("mpps set", uid, "--status", "DISCONTINUED")
    assert again.returncode == 1 and "0x0110" in again.stdout


# --- store -------------------------------------------------------------------------------


def test_store_converts_to_a_lossless_syntax(node: Node, tmp_path: Path) -> None:
    original = save(ct_dataset(rows=32), tmp_path / "ct.dcm")
    done = node.cli("store", str(original), "--transfer-syntax", RLELossless)
    assert done.returncode == 0, done.stderr
    source = dcmread(original)
    kept = dcmread(stored_path(node.server, str(source.SOPInstanceUID)))
    assert kept.file_meta.TransferSyntaxUID == RLELossless
    assert (kept.pixel_array == source.pixel_array).all()
    refused = node.cli("store", str(original), "--transfer-syntax", "1.2.840.10008.1.2.4.50")
    assert refused.returncode == 2


def test_store_a_series_from_the_local_archive(node: Node, storescp: Path) -> None:
    done = pacsnode_cli(
        *("store", "127.0.0.1", str(node.storescp_port), "-aec", "STORESCP"),
        *("--config", str(node.server.config_path), "--study", STUDY_A, "--series", SERIES_CT),
    )
    assert done.returncode == 0, done.stderr
    received = by_uid(storescp)
    assert len(received) == 2
    assert all(data == dataset_bytes(stored_path(node.server, u)) for u, data in received.items())


# --- DCMTK dcmqrscp as the peer ----------------------------------------------------------


@pytest.fixture(scope="module")
def dcmqrscp(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    base = tmp_path_factory.mktemp("dcmqrscp")
    storage = base / "storage"
    storage.mkdir()
    port = free_port()
    config = base / "dcmqrscp.cfg"
    config.write_text(DCMQRSCP_CONFIG.format(port=port, storage=storage))
    indexed = dcmtk("dcmqridx", str(storage), *map(str, node.files))
    assert indexed.returncode == 0, indexed.stderr
    with dcmtk_server(["dcmqrscp", "-c", str(config), str(port)], port, "DCMQRSCP"):
        yield port


def test_find_and_tree_against_dcmqrscp(dcmqrscp: int) -> None:
    base = ("127.0.0.1", str(dcmqrscp), "-aec", "DCMQRSCP")
    studies = pacsnode_cli("find", *base, "-k", "PatientID=PAT00*", "-f", "csv")
    assert studies.returncode == 0, studies.stderr
    assert sorted(row["StudyInstanceUID"] for row in rows(studies.stdout)) == sorted(
        [STUDY_A, STUDY_B]
    )
    tree = pacsnode_cli("find", *base, "--model", "patient", "--tree")
    assert tree.returncode == 0, tree.stderr
    depth = [line.split()[0] for line in tree.stdout.splitlines()]
    assert (depth.count("PATIENT"), depth.count("SERIES"), depth.count("IMAGE")) == (2, 3, 4)


# --- Orthanc as the peer -----------------------------------------------------------------


def test_store_find_and_get_with_orthanc(node: Node, tmp_path: Path) -> None:
    """Orthanc (the Debian package) as an independent Q/R SCP: we fill it, query it and
    get a series back."""
    dicom_port = free_port()
    modalities = {"admin": ("ADMIN", free_port())}
    with orthanc(tmp_path, modalities, dicom_port, free_port()):
        peer = ("127.0.0.1", str(dicom_port), "-aec", "ORTHANC", "-aet", "ADMIN")
        stored = pacsnode_cli("store", *peer, *map(str, node.files))
        assert stored.returncode == 0, stored.stderr
        series = pacsnode_cli(
            "find", *peer, "--level", "SERIES", "-k", f"StudyInstanceUID={STUDY_A}", "-f", "csv"
        )
        assert series.returncode == 0, series.stderr
        assert sorted(r["SeriesInstanceUID"] for r in rows(series.stdout)) == sorted(
            [SERIES_CT, SERIES_MR]
        )
        out = tmp_path / "got"
        keys = ("-k", f"StudyInstanceUID={STUDY_A}", "-k", f"SeriesInstanceUID={SERIES_CT}")
        got = pacsnode_cli("get", *peer, "--level", "SERIES", "--out", str(out), *keys)
        assert got.returncode == 0, got.stderr
        sent = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in node.files}
        received = [dcmread(path) for path in out.iterdir()]
        assert len(received) == 2
        for ds in received:
            assert ds.PixelData == sent[str(ds.SOPInstanceUID)].PixelData
