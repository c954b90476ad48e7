"""Auto-routing against real peers: DCMTK storescp as the destination, pacsnode as a
real process, rules from the config file and from the REST API."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, dataset_bytes, free_port, save
from peers import orthanc, send_datasets, send_files, wait_for_echo
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage

from pacsnode.config import ConfigError, load_settings
from pacsnode.jobs.queue import JobQueue


class StoreScp:
    """DCMTK's storescp, accepting every syntax (unless ``options`` say otherwise),
    writing files named by SOP instance."""

    def __init__(
        self, directory: Path, port: int | None = None, options: tuple[str, ...] = ("+xa",)
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(exist_ok=True)

    def start(self) -> StoreScp:
        self.process = subprocess.Popen(
            ["storescp", *self.options, "-od", str(self.directory), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "storescp did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def received(self, sop_instance_uid: str) -> Path | None:
        found = [p for p in self.directory.iterdir() if p.name.endswith(sop_instance_uid)]
        return found[0] if found else None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return f'"{value}"'


def with_routes(server: RunningServer, routes: list[dict[str, Any]]) -> RunningServer:
    """Append ``[[route]]`` tables to a not yet started server's config, then start it."""
    lines = ["", *(line for rule in routes for line in _route_lines(rule))]
    with server.config_path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    return server.start()


def _route_lines(rule: dict[str, Any]) -> list[str]:
    return ["[[route]]", *(f"{key} = {_toml(value)}" for key, value in rule.items()), ""]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.1)
    return found


def route_jobs(server: RunningServer) -> list[dict[str, Any]]:
    jobs = httpx.get(f"{server.url}/api/jobs").json()
    return [job for job in jobs if job["kind"] == "route"]


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreScp]:
    running = StoreScp(tmp_path / "storescp").start()
    yield running
    running.stop()


def test_rules_to_storescp(
    server_factory: ServerFactory, storescp: StoreScp, tmp_path: Path
) -> None:
    remote = {"host": "127.0.0.1", "port": storescp.port}
    server = server_factory(
        start=False,
        job_retry_delay=0.5,
        remotes=[
            {"ae_title": "STORESCP", **remote},
            {"ae_title": "DECODED", **remote, "transfer_syntaxes": [ExplicitVRLittleEndian]},
            {
                "ae_title": "J2KFIRST",
                **remote,
                "transfer_syntaxes": [JPEG2000Lossless, ExplicitVRLittleEndian],
            },
        ],
    )
    with_routes(
        server,
        [
            {
                "name": "thorax",
                "destinations": ["STORESCP"],
                "modality": ["CT"],
                "match": {"StudyDescription": "*thorax*"},
            },
            {
                "name": "convert",
                "destinations": ["STORESCP"],
                "calling_ae": ["J2K"],
                "transfer_syntax": ExplicitVRLittleEndian,
            },
            {"name": "prefer", "destinations": ["DECODED"], "calling_ae": ["PREFER"]},
            {"name": "keep", "destinations": ["J2KFIRST"], "calling_ae": ["KEEP"]},
            {
                "name": "stable",
                "destinations": ["STORESCP"],
                "calling_ae": ["STABLE"],
                "wait_for_stable_study": 1.5,
            },
        ],
    )

    # Matches: sent as its own bytes.
    match = ct_dataset(StudyDescription="CT THORAX W/O")
    path = save(match, tmp_path / "match.dcm")
    nomatch = [ct_dataset(StudyDescription="CT HEAD"), ct_dataset(modality="MR")]
    assert send_datasets(server.port, [match, *nomatch]) == [0, 0, 0]
    arrived = wait_for(lambda: storescp.received(match.SOPInstanceUID), "no routed file")
    assert dataset_bytes(arrived) == dataset_bytes(path)

    # A JPEG 2000 lossless file, sent decoded as the rule asks: same pixels.
    j2k = Path(get_testdata_file("MR_small_jp2klossless.dcm"))
    assert send_files(server.port, [j2k], calling_ae="J2K")[j2k].Status == 0
    original = dcmread(j2k)
    converted = dcmread(
        wait_for(lambda: storescp.received(original.SOPInstanceUID), "no converted file")
    )
    assert converted.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(converted.pixel_array, original.pixel_array)

    # The destination's preferred syntax applies when the rule names none.
    j2k_copy = dcmread(j2k)
    j2k_copy.SOPInstanceUID = j2k_copy.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    copy_path = tmp_path / "copy.dcm"
    j2k_copy.save_as(copy_path)
    assert send_files(server.port, [copy_path], calling_ae="PREFER")[copy_path].Status == 0
    preferred = dcmread(wait_for(lambda: storescp.received("1.2.3.4.5.6.7"), "no file"))
    assert preferred.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian

    # Stored in the destination's first syntax: sent as stored, not converted.
    j2k_kept = dcmread(j2k)
    j2k_kept.SOPInstanceUID = j2k_kept.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.8"
    kept_path = tmp_path / "kept.dcm"
    j2k_kept.save_as(kept_path)
    assert send_files(server.port, [kept_path], calling_ae="KEEP")[kept_path].Status == 0
    kept = wait_for(lambda: storescp.received("1.2.3.4.5.6.8"), "no file")
    assert dcmread(kept).file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert dcmread(kept).PixelData == j2k_kept.PixelData

    # A stable-study rule sends the whole study in one job once it went quiet.
    study = [ct_dataset(study="1.2.826.0.1.99.1", InstanceNumber=n) for n in range(3)]
    assert send_datasets(server.port, study[:2], calling_ae="STABLE") == [0, 0]
    assert send_datasets(server.port, study[2:], calling_ae="STABLE") == [0]
    for ds in study:
        wait_for(lambda ds=ds: storescp.received(ds.SOPInstanceUID), "study not routed")

    def study_jobs() -> list[dict[str, Any]]:
        return [j for j in route_jobs(server) if j["payload"]["study"] == "1.2.826.0.1.99.1"]

    # The files arrive before the job is marked done (it still releases the association).
    wait_for(lambda: all(j["status"] == "done" for j in study_jobs()), "study job not done")
    assert len(study_jobs()) == 1

    for ds in nomatch:
        assert storescp.received(ds.SOPInstanceUID) is None
    assert len(list(storescp.directory.iterdir())) == 7

    # STOW-RS arrivals are routed too (no calling AE: only rules without one apply).
    stowed = ct_dataset(StudyDescription="THORAX")
    stow_path = save(stowed, tmp_path / "stow.dcm")
    response = httpx.post(
        f"{server.url}/dicom-web/studies",
        content=b"--b\r\nContent-Type: application/dicom\r\n\r\n"
        + stow_path.read_bytes()
        + b"\r\n--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert response.status_code == 200, response.text
    wait_for(lambda: storescp.received(stowed.SOPInstanceUID), "STOW-RS instance not routed")


def test_rules_through_the_rest_api(server_factory: ServerFactory, storescp: StoreScp) -> None:
    server = server_factory(
        remotes=[
            {"ae_title": "STORESCP", "host": "127.0.0.1", "port": storescp.port},
            {"ae_title": "MOVEONLY", "host": "127.0.0.1", "port": 1, "move_destination_only": True},
        ]
    )
    api = f"{server.url}/api/routes"
    assert httpx.get(api).json() == []
    rule = {"name": "all-mr", "destinations": ["STORESCP"], "modality": ["MR"]}
    created = httpx.post(api, json=rule)
    assert created.status_code == 201 and created.json()["source"] == "api"
    assert httpx.post(api, json=rule).status_code == 409
    refused = httpx.post(api, json={"name": "x", "destinations": ["MOVEONLY"]})
    assert refused.status_code == 400 and "move_destination_only" in refused.text
    assert httpx.post(api, json={"name": "y", "destinations": ["NOBODY"]}).status_code == 400

    mr = ct_dataset(modality="MR", sop_class=MRImageStorage)
    assert send_datasets(server.port, [mr]) == [0]
    wait_for(lambda: storescp.received(mr.SOPInstanceUID), "MR not routed")

    # Kept across a restart, then removed.
    server.stop()
    server.start()
    assert [r["name"] for r in httpx.get(api).json()] == ["all-mr"]
    assert httpx.delete(f"{api}/all-mr").status_code == 204
    assert httpx.delete(f"{api}/all-mr").status_code == 404
    second = ct_dataset(modality="MR", sop_class=MRImageStorage)
    assert send_datasets(server.port, [second]) == [0]
    jobs = route_jobs(server)
    assert all(j["payload"]["instances"] != [second.SOPInstanceUID] for j in jobs)


def test_rules_of_an_older_routes_json_move_into_the_index(
    server_factory: ServerFactory, storescp: StoreScp
) -> None:
    """An archive whose run-time rules were kept in routes.json keeps them: they move
    into the index once, as the node starts."""
    server = server_factory(
        remotes=[{"ae_title": "STORESCP", "host": "127.0.0.1", "port": storescp.port}]
    )
    server.stop()
    old = {"name": "old-mr", "destinations": ["STORESCP"], "modality": ["MR"]}
    (server.data_dir / "routes.json").write_text(json.dumps([old]))
    server.start()
    listed = httpx.get(f"{server.url}/api/routes").json()
    assert [(r["name"], r["source"], r["modality"]) for r in listed] == [("old-mr", "api", ["MR"])]
    assert not (server.data_dir / "routes.json").exists()
    assert (server.data_dir / "routes.json.imported").is_file()
    mr = ct_dataset(modality="MR", sop_class=MRImageStorage)
    assert send_datasets(server.port, [mr]) == [0]
    wait_for(lambda: storescp.received(mr.SOPInstanceUID), "MR not routed")
    server.stop()
    server.start()  # once: the renamed file is not read again
    assert [r["name"] for r in httpx.get(f"{server.url}/api/routes").json()] == ["old-mr"]


def test_destination_down_then_restart(server_factory: ServerFactory, tmp_path: Path) -> None:
    destination = StoreScp(tmp_path / "late")
    server = server_factory(
        start=False,
        job_retry_delay=0.3,
        job_max_attempts=50,
        remotes=[{"ae_title": "LATE", "host": "127.0.0.1", "port": destination.port}],
    )
    with_routes(
        server,
        [
            {"name": "late", "destinations": ["LATE"], "calling_ae": ["MODALITY"]},
            {
                "name": "held",
                "destinations": ["LATE"],
                "calling_ae": ["HELD"],
                "wait_for_stable_study": 4,
            },
        ],
    )
    held = [ct_dataset(study="1.2.826.0.1.99.2", InstanceNumber=n) for n in range(2)]
    assert send_datasets(server.port, held, calling_ae="HELD") == [0, 0]
    ds = ct_dataset()
    assert send_datasets(server.port, [ds]) == [0]
    failing = wait_for(
        lambda: [j for j in route_jobs(server) if j["attempts"] >= 1], "no failed attempt"
    )
    assert failing[0]["status"] == "pending" and "LATE" in failing[0]["last_error"]

    # The held study is one waiting job, kept in the queue across the restart.
    assert server.stop() == 0
    stopped = server.archive()
    try:
        waiting = [(j.kind, j.status.value) for j in JobQueue(stopped.database).list()]
    finally:
        stopped.close()
    assert sorted(waiting) == [("route", "pending"), ("route-wait", "pending")]
    destination.start()
    try:
        server.start()
        wait_for(lambda: destination.received(ds.SOPInstanceUID), "not delivered after restart")
        for instance in held:
            wait_for(
                lambda uid=instance.SOPInstanceUID: destination.received(uid),
                "held study not sent after restart",
            )
        wait_for(
            lambda: [j["status"] for j in route_jobs(server)] == ["done", "done"], "jobs not done"
        )
        studies = sorted(str(j["payload"]["study"]) for j in route_jobs(server))
        assert studies == ["1.2.826.0.1.99.2", "None"]
    finally:
        destination.stop()


def _config(tmp_path: Path, remote: str, route: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(f"[server]\n\n[[remote_ae]]\n{remote}\n\n[[route]]\n{route}\n")
    return path


@pytest.mark.parametrize(
    ("remote", "route", "error"),
    [
        (
            'ae_title = "A"\nhost = "h"\nport = 1\nmove_destination_only = true',
            'name = "r"\ndestinations = ["A"]',
            "move_destination_only",
        ),
        ('ae_title = "A"\nhost = "h"\nport = 1', 'name = "r"\ndestinations = ["B"]', "B is not"),
        (
            'ae_title = "A"\nhost = "h"\nport = 1',
            'name = "r"\ndestinations = ["A"]\ntransfer_syntax = "1.2.840.10008.1.2.4.91"',
            "allow_lossy",
        ),
        (
            'ae_title = "A"\nhost = "h"\nport = 1',
            'name = "r"\ndestinations = ["A"]\nmatch = { NoSuchKeyword = "x" }',
            "not a DICOM keyword",
        ),
    ],
)
def test_bad_rules_are_refused_at_load(tmp_path: Path, remote: str, route: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_settings(_config(tmp_path, remote, route), environ={})


def test_route_to_orthanc_with_commitment(server_factory: ServerFactory, tmp_path: Path) -> None:
    dicom_port, http_port = free_port(), free_port()
    server = server_factory(
        start=False,
        remotes=[{"ae_title": "ORTHANC", "host": "127.0.0.1", "port": dicom_port}],
    )
    with orthanc(tmp_path, {"pacs": ("PACSNODE", server.port)}, dicom_port, http_port) as peer:
        base = peer.url
        with_routes(server, [{"name": "orthanc", "destinations": ["ORTHANC"], "commit": True}])
        ds = ct_dataset()
        assert send_datasets(server.port, [ds]) == [0]
        found = wait_for(
            lambda: httpx.post(
                f"{base}/tools/find",
                json={"Level": "Instance", "Query": {"SOPInstanceUID": ds.SOPInstanceUID}},
            ).json(),
            "instance not in Orthanc",
        )
        assert len(found) == 1
        # The report comes on our association or on a new one to the DIMSE server.
        wait_for(
            lambda: (
                "storage commitment by ORTHANC: 1 committed, 0 failed" in server.log()
                or "from ORTHANC: 1 committed, 0 failed" in server.log()
            ),
            "no storage commitment report logged",
        )


DCMQRSCP_ARCHIVE = """\
NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16

HostTable BEGIN
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
ARCHIVE {storage} RW (100, 1024mb) ANY
AETable END
"""


def test_route_to_dcmqrscp_as_stored_and_converted(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A DCMTK archive as the destination: one rule sends as stored, another converts
    JPEG 2000 lossless to Explicit VR Little Endian (the archive keeps what it gets)."""
    storage = tmp_path / "archive"
    storage.mkdir()
    port = free_port()
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text(DCMQRSCP_ARCHIVE.format(port=port, storage=storage))
    process = subprocess.Popen(
        ["dcmqrscp", "-c", str(config), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_echo(port, "ARCHIVE", process)
        remote = {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": port}
        server = server_factory(remotes=[remote], start=False)
        with_routes(
            server,
            [
                {"name": "as-stored", "destinations": ["ARCHIVE"], "modality": ["CT"]},
                {
                    "name": "converted",
                    "destinations": ["ARCHIVE"],
                    "modality": ["MR"],
                    "transfer_syntax": ExplicitVRLittleEndian,
                },
            ],
        )
        ct = ct_dataset(modality="CT")
        assert send_datasets(server.port, [ct]) == [0]
        lossless = Path(get_testdata_file("MR_small_jp2klossless.dcm"))
        assert all(
            s is not None and s.Status == 0 for s in send_files(server.port, [lossless]).values()
        )

        def arrived(uid: str) -> Path | None:
            for path in storage.rglob("*"):
                if path.is_file() and path.suffix != ".dat":
                    try:
                        if dcmread(path, stop_before_pixels=True).SOPInstanceUID == uid:
                            return path
                    except Exception:
                        continue
            return None

        kept = wait_for(lambda: arrived(str(ct.SOPInstanceUID)), "CT not in dcmqrscp")
        assert dataset_bytes(kept) == dataset_bytes(save(ct, tmp_path / "ct.dcm"))
        original = dcmread(lossless)
        converted = wait_for(lambda: arrived(str(original.SOPInstanceUID)), "MR not in dcmqrscp")
        received = dcmread(converted)
        assert received.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(received.pixel_array, original.pixel_array)
    finally:
        process.terminate()
        process.wait(10)
