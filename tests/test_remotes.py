"""The remote AE table edited at run time (REST API and CLI), and retrieving into the
archive from real peers: DCMTK dcmqrscp by C-MOVE and C-GET, Orthanc by C-MOVE."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    ct_dataset,
    dataset_bytes,
    free_port,
    save,
    stored_path,
    write_config,
)
from peers import Orthanc, dcmtk, orthanc, pacsnode_cli, send_datasets, send_files, wait_for_echo
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.events import Event

from pacsnode.config import Settings

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"

DCMQRSCP_CONFIG = """\
NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16

HostTable BEGIN
pacsnode = (PACSNODE, 127.0.0.1, {pacsnode_port})
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
DCMQRSCP {storage} R (100, 1024mb) ANY
AETable END
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module, with one remote AE from its config file."""
    base = tmp_path_factory.mktemp("remotes")
    data = base / "data"
    port, http_port = free_port(), free_port()
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": port,
        "http_port": http_port,
        "data_dir": str(data),
        "bind_address": "127.0.0.1",
        "log_level": "INFO",
        "workers": 1,  # one process: test_workers.py covers several
    }
    configured = [{"ae_title": "CONFIGURED", "host": "127.0.0.1", "port": 104}]
    config = write_config(base / "server.toml", settings, configured)
    running = RunningServer(
        config,
        data,
        port,
        "PACSNODE",
        base / "server.log",
        Settings(data_dir=data).resolved_database_url,
        http_port,
    )
    running.start()
    yield running
    running.kill()


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return pacsnode_cli(*args, "--config", str(server.config_path))


def study_files(directory: Path, series_count: int, per_series: int) -> dict[str, Path]:
    """One new study as files, by SOP Instance UID."""
    directory.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    files = {}
    for _ in range(series_count):
        series = generate_uid()
        for instance in range(per_series):
            ds = ct_dataset(study=study, series=series, InstanceNumber=instance + 1)
            files[str(ds.SOPInstanceUID)] = save(ds, directory / f"{ds.SOPInstanceUID}.dcm")
    return files


def wait_for_job(server: RunningServer, pk: int) -> dict[str, Any]:
    """The job once it has finished, or once an attempt has failed."""
    deadline = time.monotonic() + 60
    while True:
        job = httpx.get(f"{server.url}/api/jobs/{pk}").json()
        if job["status"] in ("done", "failed", "cancelled") or job["attempts"] > 0:
            return job
        assert time.monotonic() < deadline, f"job {pk} did not finish: {job}"
        time.sleep(0.2)


def wait_for_remote(server: RunningServer, ae_title: str, present: bool = True) -> None:
    """Until the server's cached table has caught up with a write by the CLI."""
    deadline = time.monotonic() + 10
    while (httpx.get(f"{server.url}/api/remote/{ae_title}").status_code == 200) != present:
        assert time.monotonic() < deadline, f"the server does not see {ae_title}"
        time.sleep(0.2)


def assert_retrieved(server: RunningServer, files: dict[str, Path]) -> None:
    """In the index, and the data set byte for byte as in the source file."""
    for uid, source in files.items():
        assert dataset_bytes(stored_path(server, uid)) == dataset_bytes(source)


# --- the table ---------------------------------------------------------------------------


def test_remote_table_through_the_rest_api(server: RunningServer) -> None:
    base = f"{server.url}/api/remote"
    created = httpx.put(
        f"{base}/VIEWER", json={"host": "127.0.0.1", "port": 4242, "offers": ["store"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["offers"] == ["store"]
    assert created.json()["source"] == "database"

    changed = httpx.put(f"{base}/VIEWER", json={"host": "10.1.2.3", "port": 104})
    assert changed.status_code == 200
    shown = httpx.get(f"{base}/VIEWER").json()
    assert (shown["host"], shown["port"], shown["offers"]) == ("10.1.2.3", 104, [])

    bad = httpx.put(f"{base}/VIEWER", json={"host": "h", "port": "many"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "port"
    bad = httpx.put(f"{base}/VIEWER", json={"host": "h", "port": 1, "offers": ["fly"]})
    assert (bad.status_code, bad.json()["field"]) == (400, "offers")
    bad = httpx.put(f"{base}/{'X' * 17}", json={"host": "h", "port": 1})
    assert (bad.status_code, bad.json()["field"]) == (400, "ae_title")

    listed = {item["ae_title"]: item["source"] for item in httpx.get(base).json()}
    assert listed["CONFIGURED"] == "config"
    assert listed["VIEWER"] == "database"

    refused = httpx.delete(f"{base}/CONFIGURED")
    assert refused.status_code == 409
    assert "config file" in refused.json()["error"]
    assert httpx.delete(f"{base}/VIEWER").status_code == 204
    assert httpx.get(f"{base}/VIEWER").status_code == 404
    assert httpx.delete(f"{base}/VIEWER").status_code == 404


def test_an_ae_added_by_the_cli_is_a_move_destination_of_the_server(
    server: RunningServer,
) -> None:
    received: list[str] = []
    arrived = threading.Event()

    def on_store(event: Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        arrived.set()
        return 0x0000

    scp = AE(ae_title="WORKSTATION")
    scp.supported_contexts = StoragePresentationContexts
    scp_port = free_port()
    listener = scp.start_server(
        ("127.0.0.1", scp_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        added = cli(server, "remote", "add", "WORKSTATION", "127.0.0.1", str(scp_port))
        assert added.returncode == 0, added.stderr
        assert "WORKSTATION" in cli(server, "remote", "list").stdout
        wait_for_remote(server, "WORKSTATION")

        ds = ct_dataset()
        send_datasets(server.port, [ds])
        statuses = move_from(server, str(ds.StudyInstanceUID), "WORKSTATION")
        assert statuses[-1] == 0x0000
        assert arrived.wait(10)
        assert received == [str(ds.SOPInstanceUID)]
    finally:
        listener.shutdown()

    assert cli(server, "remote", "delete", "WORKSTATION").returncode == 0
    wait_for_remote(server, "WORKSTATION", present=False)
    refused = cli(server, "remote", "delete", "CONFIGURED")
    assert refused.returncode == 1
    assert "config file" in refused.stderr
    unknown = cli(server, "remote", "delete", "NOBODY")
    assert (unknown.returncode, "no remote AE" in unknown.stderr) == (1, True)


def move_from(server: RunningServer, study: str, destination: str) -> list[int]:
    ae = AE(ae_title="MOVER")
    ae.add_requested_context(STUDY_ROOT_MOVE)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        return [
            int(status.Status)
            for status, _ in assoc.send_c_move(query, destination, STUDY_ROOT_MOVE)
        ]
    finally:
        assoc.release()


# --- retrieve from DCMTK dcmqrscp --------------------------------------------------------


@pytest.fixture(scope="module")
def dcmqrscp(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """dcmqrscp holding two studies, which knows pacsnode as a move destination; it is
    added to pacsnode's table through the REST API. Yields the source files."""
    base = tmp_path_factory.mktemp("dcmqrscp")
    files = {**study_files(base / "a", 2, 2), **study_files(base / "b", 2, 2)}
    storage = base / "storage"
    storage.mkdir()
    port = free_port()
    config = base / "dcmqrscp.cfg"
    config.write_text(DCMQRSCP_CONFIG.format(port=port, storage=storage, pacsnode_port=server.port))
    indexed = dcmtk("dcmqridx", str(storage), *map(str, files.values()))
    assert indexed.returncode == 0, indexed.stderr
    with (base / "dcmqrscp.log").open("wb") as log:
        process = subprocess.Popen(
            ["dcmqrscp", "-c", str(config), str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_echo(port, "DCMQRSCP", process)
        put = httpx.put(
            f"{server.url}/api/remote/DCMQRSCP",
            json={"host": "127.0.0.1", "port": port, "description": "DCMTK"},
        )
        assert put.status_code == 201, put.text
        yield files
    finally:
        process.terminate()
        process.wait(10)


def studies_of(files: dict[str, Path]) -> dict[str, dict[str, dict[str, Path]]]:
    """Study UID → series UID → SOP Instance UID → file."""
    tree: dict[str, dict[str, dict[str, Path]]] = {}
    for uid, path in files.items():
        ds = dcmread(path, stop_before_pixels=True)
        series = tree.setdefault(str(ds.StudyInstanceUID), {})
        series.setdefault(str(ds.SeriesInstanceUID), {})[uid] = path
    return tree


def test_retrieve_a_study_from_dcmqrscp_by_c_move_through_the_rest_api(
    server: RunningServer, dcmqrscp: dict[str, Path]
) -> None:
    study, series = sorted(studies_of(dcmqrscp).items())[0]
    accepted = httpx.post(
        f"{server.url}/api/remote/DCMQRSCP/retrieve",
        json={"level": "STUDY", "study": study, "method": "move"},
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["Location"] == f"/api/jobs/{accepted.json()['id']}"
    job = wait_for_job(server, accepted.json()["id"])
    assert job["status"] == "done", job
    assert job["kind"] == "retrieve"
    result = job["result"]
    assert result["state"] == "done"
    assert result["method"] == "move"
    assert result["status"] == "0x0000"
    assert (result["completed"], result["failed"], result["failed_sop_instance_uids"]) == (
        4,
        0,
        [],
    )
    assert_retrieved(
        server, {uid: path for files in series.values() for uid, path in files.items()}
    )


def test_retrieve_series_from_dcmqrscp_by_c_get_with_the_cli(
    server: RunningServer, dcmqrscp: dict[str, Path]
) -> None:
    study, series = sorted(studies_of(dcmqrscp).items())[1]
    first, second = sorted(series)
    done = cli(
        server,
        "retrieve",
        "DCMQRSCP",
        "--study",
        study,
        "--series",
        first,
        "--method",
        "get",
        "--wait",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 completed, 0 failed" in done.stdout
    assert "final status 0x0000" in done.stdout
    assert_retrieved(server, series[first])
    for uid in series[first]:  # the remote is the source, not our end of the association
        meta = dcmread(stored_path(server, uid), stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "DCMQRSCP"
    archive = server.archive()
    try:
        for uid in series[second]:  # only the series asked for
            assert archive.index.find_instance(uid) is None
    finally:
        archive.close()


def test_c_get_keeps_compressed_objects_as_the_remote_keeps_them(
    server: RunningServer, server_factory: ServerFactory
) -> None:
    """The SOP classes, asked for first, let C-GET propose the compressed syntaxes, so a
    remote that can send what it keeps as it keeps it does (another pacsnode here)."""
    remote = server_factory(ae_title="KEEPER")
    sources = [Path(get_testdata_file(name)) for name in ("SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm")]
    assert all(
        status is not None and status.Status == 0
        for status in send_files(remote.port, sources).values()
    )
    entry = {"host": "127.0.0.1", "port": remote.port}
    assert httpx.put(f"{server.url}/api/remote/KEEPER", json=entry).status_code == 201
    for source in sources:
        original = dcmread(source)
        study = str(original.StudyInstanceUID)
        done = cli(server, "retrieve", "KEEPER", "--study", study, "--method", "get", "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        uid = str(original.SOPInstanceUID)
        assert_retrieved(server, {uid: source})
        stored = dcmread(stored_path(server, uid), stop_before_pixels=True)
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_offers_choose_the_method_and_unknown_remotes_are_refused(
    server: RunningServer,
) -> None:
    base = f"{server.url}/api/remote"
    httpx.put(f"{base}/GETONLY", json={"host": "127.0.0.1", "port": 1, "offers": ["get"]})
    httpx.put(f"{base}/FINDONLY", json={"host": "127.0.0.1", "port": 1, "offers": ["find"]})
    try:
        body = {"study": generate_uid(), "method": "move"}
        switched = httpx.post(f"{base}/GETONLY/retrieve", json=body)
        assert switched.status_code == 202
        assert switched.json()["method"] == "get"
        attempted = wait_for_job(server, switched.json()["id"])
        assert "cannot connect" in attempted["last_error"]  # nothing listens there
        cancelled = httpx.post(f"{server.url}/api/jobs/{switched.json()['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        neither = httpx.post(f"{base}/FINDONLY/retrieve", json=body)
        assert (neither.status_code, neither.json()["field"]) == (400, "method")
        no_study = httpx.post(f"{base}/GETONLY/retrieve", json={"series": generate_uid()})
        assert (no_study.status_code, no_study.json()["field"]) == (400, "study")
    finally:
        httpx.delete(f"{base}/GETONLY")
        httpx.delete(f"{base}/FINDONLY")
    assert httpx.post(f"{base}/NOBODY/retrieve", json=body).status_code == 404
    unknown = cli(server, "retrieve", "NOBODY", "--study", generate_uid())
    assert unknown.returncode == 1
    assert "no remote AE 'NOBODY'" in unknown.stderr


# --- retrieve from Orthanc ----------------------------------------------------------------


@pytest.fixture
def orthanc_source(server: RunningServer, tmp_path: Path) -> Iterator[Orthanc]:
    """A local Orthanc that knows pacsnode as a move destination."""
    modalities = {"pacs": ("PACSNODE", server.port)}
    with orthanc(tmp_path, modalities, free_port(), free_port()) as running:
        yield running


def test_retrieve_a_study_from_orthanc_by_c_move_with_the_cli(
    server: RunningServer, orthanc_source: Orthanc, tmp_path: Path
) -> None:
    base, dicom_port = orthanc_source.url, orthanc_source.dicom_port
    files = study_files(tmp_path / "source", 1, 3)
    for path in files.values():
        httpx.post(f"{base}/instances", content=path.read_bytes()).raise_for_status()
    added = cli(
        server, "remote", "add", "ORTHANC", "127.0.0.1", str(dicom_port), "--offers", "move,find"
    )
    assert added.returncode == 0, added.stderr
    wait_for_remote(server, "ORTHANC")
    study = str(studies_of(files).popitem()[0])

    done = cli(server, "retrieve", "ORTHANC", "--study", study, "--method", "get", "--wait")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "by C-MOVE" in done.stdout  # Orthanc is not offered for C-GET here
    assert "3 completed, 0 failed" in done.stdout
    assert_retrieved(server, files)
    assert cli(server, "remote", "delete", "ORTHANC").returncode == 0
