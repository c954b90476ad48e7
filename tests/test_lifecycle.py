"""The deletion lifecycle: soft delete, undelete and hard delete with their audit messages
(validated against the PS3.15 schema), on SQLite and PostgreSQL; soft-deleted objects
served only to the remote AE configured for them, by C-FIND, C-MOVE, QIDO-RS and
WADO-RS; and the retention job, by age and by disk watermark (a real tmpfs)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ct_dataset, save, start_server
from filesystems import tmpfs
from lxml import etree
from peers import associate, pacsnode_cli, send_datasets
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_audit import SCHEMA
from test_deletion import found_studies, two_studies
from test_index import counters, ingest, one
from test_retrieve_scp import STUDY_ROOT_MOVE, Receiver

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.deletion import NothingToRestore, Target
from pacsnode.archive.ingest import Received
from pacsnode.archive.retention import Retention
from pacsnode.archive.retrieve import locate
from pacsnode.archive.schema import patient, study
from pacsnode.config import Settings

USER = audit.Actor("alice", "127.0.0.1", requestor=True)
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


@pytest.fixture
def archive(tmp_path: Path, database_url: str) -> Iterator[Archive]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    opened = Archive(settings)
    audit.configure(settings, opened.database)
    yield opened
    audit.close()
    opened.close()


def journal(data_dir: Path) -> list[dict[str, Any]]:
    """Every message of the local audit log, each checked against the PS3.15 schema."""
    lines = [
        json.loads(line)
        for file in sorted((data_dir / "audit").glob("*.log"))
        for line in file.read_text().splitlines()
    ]
    for line in lines:
        xml = etree.fromstring(line["xml"].encode())
        assert SCHEMA.validate(xml), (SCHEMA.error_log, line["xml"])
    return lines


def life_cycle(message: dict[str, Any]) -> str | None:
    xml = etree.fromstring(message["xml"].encode())
    return xml.find("ParticipantObjectIdentification").get("ParticipantObjectDataLifeCycle")


def test_soft_delete_restore_and_hard_delete_are_audited(archive: Archive) -> None:
    uids = two_studies(archive)
    archive.deletion.delete(Target("patient", "P1"), False, USER)
    assert found_studies(archive) == []

    restored = archive.deletion.restore(Target("study", uids["a"]), USER)

    assert (restored.instances, restored.series, restored.studies) == (3, 2, (uids["a"],))
    assert found_studies(archive) == [uids["a"]]
    assert len(locate(archive, uids["a"])) == 3
    assert counters(one(archive, patient, patient.c.patient_id == "P1")) == {
        "num_studies": 1,
        "num_series": 2,
        "num_instances": 3,
    }
    with pytest.raises(NothingToRestore, match=f"^no deleted study {uids['a']} in the archive$"):
        archive.deletion.restore(Target("study", uids["a"]), USER)
    archive.deletion.delete(Target("patient", "P1"), True, USER)
    assert found_studies(archive) == []

    audit.close()  # writes what is queued
    messages = journal(archive.settings.data_dir)
    assert (messages[0]["event_id"], messages[0]["action"]) == ("110110", "C")  # ingest
    messages = messages[1:]
    events = [(m["event_id"], m["action"]) for m in messages]
    assert events == [
        ("110105", "D"),  # the patient's studies, soft
        ("110110", "D"),  # the patient left with nothing: logical deletion
        ("110103", "C"),  # study A undeleted
        ("110110", "C"),  # and with it the patient
        ("110105", "D"),  # everything, hard
        ("110110", "D"),  # the patient erased
    ]
    soft, gone, undeleted, back, hard, erased = messages
    assert "soft delete of patient P1" in soft["xml"] and "hard delete" in hard["xml"]
    assert sorted(soft["studies"]) == sorted([uids["a"], uids["b"]])
    assert undeleted["studies"] == [uids["a"]] and undeleted["user"] == "alice"
    assert [life_cycle(m) for m in (gone, back, erased)] == ["14", "1", "15"]
    assert gone["patients"] == back["patients"] == erased["patients"] == ["P1"]


def test_restore_leaves_rejected_instances_rejected(archive: Archive) -> None:
    """An instance an IOCM note rejected is not "deleted": restore does not reach it."""
    from test_iocm import note

    uid = generate_uid()
    images = [ct_dataset(study=uid, patient_id="P9", InstanceNumber=n) for n in (1, 2)]
    for ds in [*images, note("113001", uid, images[:1])]:
        assert ingest(archive, ds)[0].ok
    archive.deletion.delete(Target("study", uid), False, USER)

    restored = archive.deletion.restore(Target("study", uid), USER)

    assert restored.instances == 1
    assert [item.sop_instance_uid for item in locate(archive, uid)] == [images[1].SOPInstanceUID]


# --- a server with an AE that sees deleted objects, and one that does not -------------


class Setup:
    def __init__(self, server: RunningServer, receiver: Receiver) -> None:
        self.server = server
        self.receiver = receiver

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.server.url}{path}", timeout=30, **kwargs)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    receiver = Receiver([ExplicitVRLittleEndian])
    here = {"host": "127.0.0.1", "port": receiver.port}
    remotes = [
        {"ae_title": "QA", **here, "show_deleted": True},
        {"ae_title": "WS", **here},
    ]
    server = start_server(
        tmp_path_factory.mktemp("lifecycle"),
        remotes,
        retention_days=3650,
        retention_interval=86400,
    )
    yield Setup(server, receiver)
    server.kill()
    receiver.server.shutdown()


def c_find(port: int, calling_ae: str, level: str, **keys: str) -> list[Dataset]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])], calling_ae)
    found = [ds for status, ds in assoc.send_c_find(identifier, STUDY_ROOT_FIND) if ds]
    assoc.release()
    return found


def c_move(port: int, calling_ae: str, study_uid: str) -> int:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    assoc = associate(port, [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])], calling_ae)
    responses = list(assoc.send_c_move(identifier, calling_ae, STUDY_ROOT_MOVE))
    assoc.release()
    return int(responses[-1][0].NumberOfCompletedSuboperations or 0)


def test_soft_deleted_objects_reach_only_the_ae_configured_for_them(setup: Setup) -> None:
    port = setup.server.port
    uid, series = generate_uid(), generate_uid()
    images = [
        ct_dataset(study=uid, series=series, patient_id="LC1", InstanceNumber=n) for n in (1, 2)
    ]
    assert send_datasets(port, images) == [0, 0]
    keys = {"StudyInstanceUID": uid, "NumberOfStudyRelatedInstances": "", "ModalitiesInStudy": ""}

    deleted = setup.api("DELETE", f"/api/studies/{uid}")

    assert deleted.status_code == 200 and deleted.json()["instances"] == 2
    assert c_find(port, "WS", "STUDY", **keys) == []
    [seen] = c_find(port, "QA", "STUDY", **keys)
    assert (seen.NumberOfStudyRelatedInstances, seen.ModalitiesInStudy) == (2, "CT")
    assert len(c_find(port, "QA", "STUDY", StudyInstanceUID="", ModalitiesInStudy="CT")) >= 1
    images_seen = c_find(
        port, "QA", "IMAGE", StudyInstanceUID=uid, SeriesInstanceUID=series, SOPInstanceUID=""
    )
    assert {ds.SOPInstanceUID for ds in images_seen} == {ds.SOPInstanceUID for ds in images}
    assert c_move(port, "WS", uid) == 0
    assert c_move(port, "QA", uid) == 2
    assert {ds.SOPInstanceUID for ds in images} <= set(setup.receiver.received)

    for path, count in (("/dicom-web/aets/QA", 1), ("/dicom-web", 0), ("/dicom-web/aets/WS", 0)):
        answer = setup.api("GET", f"{path}/studies", params={"StudyInstanceUID": uid})
        assert answer.status_code == 200 and len(answer.json()) == count, path
    metadata = setup.api("GET", f"/dicom-web/aets/QA/studies/{uid}/metadata")
    assert metadata.status_code == 200 and len(metadata.json()) == 2
    assert setup.api("GET", f"/dicom-web/studies/{uid}/metadata").status_code == 404
    assert setup.api("GET", f"/dicom-web/aets/NOBODY/studies/{uid}").status_code == 404

    restored = setup.api("POST", f"/api/studies/{uid}/restore")

    assert restored.status_code == 200 and restored.json()["instances"] == 2
    assert len(c_find(port, "WS", "STUDY", **keys)) == 1
    assert setup.api("POST", f"/api/studies/{uid}/restore").status_code == 404
    refused = setup.api("DELETE", f"/api/studies/{uid}", params={"reason": "999"})
    assert refused.status_code == 400 and "113039" in refused.json()["error"]


def test_delete_and_restore_through_the_cli(setup: Setup) -> None:
    uid = generate_uid()
    assert send_datasets(setup.server.port, [ct_dataset(study=uid, patient_id="LC2")]) == [0]
    config = str(setup.server.config_path)

    deleted = pacsnode_cli("delete", "--study", uid, "--yes", "--reason", "113001", "-c", config)
    assert deleted.returncode == 0, deleted.stderr
    assert c_find(setup.server.port, "WS", "STUDY", StudyInstanceUID=uid) == []
    restored = pacsnode_cli("restore", "--study", uid, "--config", config)
    assert restored.returncode == 0, restored.stderr
    assert f"restored study {uid}: 1 instances" in restored.stdout
    assert len(c_find(setup.server.port, "WS", "STUDY", StudyInstanceUID=uid)) == 1
    again = pacsnode_cli("restore", "--study", uid, "--config", config)
    assert again.returncode == 2 and f"no deleted study {uid}" in again.stderr


def wait_for_job(setup: Setup, pk: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = setup.api("GET", f"/api/jobs/{pk}").json()
        if job["status"] in ("done", "failed"):
            return dict(job)
        assert time.monotonic() < deadline, f"job {pk} still {job['status']}"
        time.sleep(0.1)


def test_retention_job_removes_old_studies_and_reports_them(setup: Setup) -> None:
    old, recent = generate_uid(), generate_uid()
    made = [
        ct_dataset(study=old, patient_id="LC3", StudyDate="20010101"),
        ct_dataset(study=recent, patient_id="LC3", StudyDate=time.strftime("%Y%m%d")),
    ]
    assert send_datasets(setup.server.port, made) == [0, 0]

    queued = setup.api("POST", "/api/retention/run")

    assert queued.status_code == 202
    job = wait_for_job(setup, queued.json()["id"])
    assert job["status"] == "done", job
    removed = job["result"]["removed"]
    assert [item["study"] for item in removed if item["study"] in (old, recent)] == [old]
    assert removed[0]["why"] == "older than 3650 days" and removed[0]["instances"] == 1
    assert c_find(setup.server.port, "QA", "STUDY", StudyInstanceUID=old) == []  # hard
    assert len(c_find(setup.server.port, "WS", "STUDY", StudyInstanceUID=recent)) == 1
    setup.server.wait_for_log(f"retention deleted study {old} (1 instances)")
    deletions = [
        m
        for m in journal(setup.server.data_dir)
        if m["event_id"] == "110105" and old in m["studies"]
    ]
    assert [m["user"] for m in deletions] == ["PACSNODE"]


def test_disk_watermark_deletes_the_oldest_studies_first(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        settings = Settings(data_dir=disk / "data", retention_disk_percent=30)
        archive = Archive(settings)
        try:
            dates = ("20200101", "20210101", "20220101")
            uids = [generate_uid() for _ in dates]
            for number, (uid, date) in enumerate(zip(uids, dates, strict=True)):
                ds = ct_dataset(study=uid, patient_id="WM", StudyDate=date, rows=400)
                source = save(ds, tmp_path / f"{number}.dcm")  # off the small disk
                assert archive.ingest(Received(source)).ok
            usage = shutil.disk_usage(disk)
            assert (usage.total - usage.free) / usage.total > 0.30
            retention = Retention.of(archive.deletion, settings)

            report = retention.run()

            assert report.disk_percent is not None and report.disk_percent <= 30
            gone = [item.study for item in report.removed]
            assert gone == uids[: len(gone)] and 0 < len(gone) < 3  # oldest first, not all
            with archive.database.reader.connect() as connection:
                left = connection.execute(study.select()).all()
            assert {row.study_instance_uid for row in left} == set(uids[len(gone) :])
        finally:
            archive.close()
