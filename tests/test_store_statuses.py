"""C-STORE statuses as CDRServer defines them (the archive CDRClient was written for),
through every door that stores: C-STORE (pynetdicom and DCMTK storescu), STOW-RS and
``pacsnode import``, on real filesystems and real databases made to fail.

| status | cause |
|---|---|
| ``A900`` | Study, Series or SOP Instance UID missing; SOP Instance UID not the request's |
| ``A701`` | the file cannot be written (a read-only directory, a write error) |
| ``A700`` | out of disk, or the index out of reach or out of disk |
| ``C000`` | the index refused the update |
"""

from __future__ import annotations

import re
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import RunningServer, ServerFactory, ct_dataset, dataset_bytes, save
from filesystems import fill, read_only, require_root, tmpfs
from peers import VERIFICATION, answers_echo, associate, dcmtk, pacsnode_cli, send_files
from pydicom import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from test_storage_scp import _meta, _raw_file
from test_stow import (
    FAILED_SOP,
    FAILURE_REASON,
    dicom_parts,
    multipart,
    part10,
    post,
    sequence,
    value,
)

TRIGGER_MESSAGE = "instances refused by a trigger"


def storescu(server: RunningServer, path: Path) -> tuple[int, str]:
    """Send one file with DCMTK's storescu; the status and comment it was answered."""
    sent = dcmtk("storescu", "-d", "-aec", "PACSNODE", "127.0.0.1", str(server.port), str(path))
    said = sent.stdout + sent.stderr
    status = re.search(r"DIMSE Status\s*: 0x([0-9a-fA-F]{4})", said)
    assert status, said
    comment = re.search(r"\(0000,0902\) LO \[(.*)\]", said)
    return int(status.group(1), 16), comment.group(1) if comment else ""


def stored(server: RunningServer) -> int:
    archive = server.archive()
    try:
        return archive.index.stats().instances
    finally:
        archive.close()


def store_all(server: RunningServer, datasets: list[Dataset]) -> list[tuple[int, str]]:
    """C-STORE each on one association, then check the association still answers."""
    assoc = associate(
        server.port,
        [(CTImageStorage, [ExplicitVRLittleEndian]), (VERIFICATION, [ImplicitVRLittleEndian])],
    )
    try:
        answers = []
        for ds in datasets:
            response = assoc.send_c_store(ds)
            answers.append((int(response.Status), str(response.get("ErrorComment", ""))))
        assert answers_echo(assoc)  # a refusal never costs the association
        return answers
    finally:
        assoc.release()


# A900 -------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID"])
def test_storescu_sees_a900_for_a_data_set_without_its_uids(
    server: RunningServer, tmp_path: Path, missing: str
) -> None:
    ds = ct_dataset()
    delattr(ds, missing)
    answer = storescu(server, save(ds, tmp_path / "missing.dcm"))
    assert answer == (0xA900, f"{missing} is missing")
    assert f"status 0xA900 {missing} is missing" in server.log()
    assert stored(server) == 0


def test_a_missing_or_unrequested_sop_instance_uid_is_a900(
    server: RunningServer, tmp_path: Path
) -> None:
    """Sent as files whose File Meta names the instance (pynetdicom takes the request's
    Affected SOP Instance UID from it) while the data set lacks it or holds another."""
    requested = generate_uid()
    without = ct_dataset(instance=requested)
    without.file_meta.MediaStorageSOPClassUID = CTImageStorage
    without.file_meta.MediaStorageSOPInstanceUID = requested
    del without.SOPInstanceUID
    other = ct_dataset()
    files = [
        _raw_file(
            tmp_path / f"sent{n}.dcm",
            _meta(CTImageStorage, requested),
            dataset_bytes(save(ds, tmp_path / f"source{n}.dcm")),
        )
        for n, ds in enumerate((without, other))
    ]
    answers = send_files(server.port, files)
    assert [(int(a.Status), str(a.ErrorComment)) for a in answers.values() if a] == [
        (0xA900, "SOPInstanceUID is missing"),
        (0xA900, "SOP Instance UID differs from the request's"),
    ]
    assert "request names SOP Instance" in server.log()
    assert stored(server) == 0


# A701 -------------------------------------------------------------------------------


def test_a_read_only_storage_directory_answers_a701_at_every_door(
    server: RunningServer, tmp_path: Path
) -> None:
    first = ct_dataset(patient_id="RO1")
    assert store_all(server, [first]) == [(0, "")]
    refused = [ct_dataset(patient_id="RO2"), ct_dataset(patient_id="RO3")]
    with read_only(server.data_dir / "storage"):
        answers = store_all(server, refused[:1])
        by_dcmtk = storescu(server, save(refused[1], tmp_path / "dcmtk.dcm"))
        stow = post(server, multipart(dicom_parts(part10(ct_dataset(patient_id="RO4")))))
        imported = pacsnode_cli(
            "import",
            str(save(ct_dataset(patient_id="RO5"), tmp_path / "import.dcm")),
            "--data-dir",
            str(server.data_dir),
        )
    assert answers == [(0xA701, "cannot write file: Read-only file system")]
    assert by_dcmtk == (0xA701, "cannot write file: Read-only file system")
    assert stow.status_code == 409
    [failed] = sequence(stow.json(), FAILED_SOP)
    assert value(failed, FAILURE_REASON) == 0xA701
    assert imported.returncode == 1, imported.stdout + imported.stderr
    assert "0xA701 cannot write file: Read-only file system" in imported.stdout
    assert "Read-only file system" in server.log()
    assert stored(server) == 1  # nothing half-stored: no index row without its file
    assert store_all(server, refused) == [(0, ""), (0, "")]  # writable again: all is well


def test_a_read_only_spool_answers_a701_and_keeps_the_association(
    server: RunningServer,
) -> None:
    """The directory each received data set is first written to cannot be written: every
    C-STORE of the association is answered A701, and the association goes on."""
    refused = [ct_dataset(patient_id="SP1"), ct_dataset(patient_id="SP2")]
    before = stored(server)
    with read_only(server.data_dir / "tmp"):
        answers = store_all(server, refused)
    assert answers == [(0xA701, "cannot write file: Read-only file system")] * 2
    assert stored(server) == before
    assert store_all(server, refused) == [(0, ""), (0, "")]


def test_a_write_error_while_receiving_answers_a701(server: RunningServer) -> None:
    """A file size limit (RLIMIT_FSIZE) makes the kernel fail the write of the received
    data set itself with EFBIG, the way a failing disk would: A701, where a full disk
    answers A700 (test_durability)."""
    require_root()  # to lower another process's limit
    assert server.process is not None
    limit = 1 << 20
    resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (limit, limit))
    large = ct_dataset(rows=1024)  # 2 MiB of pixel data
    small = ct_dataset()
    answers = store_all(server, [large, small])
    assert answers == [(0xA701, "cannot write file: File too large"), (0, "")]
    assert "File too large" in server.log()
    assert stored(server) == 1


# A700 -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "3m") as mounted:
        yield mounted


def test_import_onto_a_full_disk_answers_a700(small_disk: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for number in range(8):  # 512 KiB each: the 3 MiB disk fills after a few
        save(ct_dataset(rows=512, InstanceNumber=number), incoming / f"{number}.dcm")
    imported = pacsnode_cli(
        "import",
        str(incoming),
        "--data-dir",
        str(small_disk / "data"),
        "--database-url",
        f"sqlite:///{tmp_path / 'index.sqlite'}",
    )
    assert imported.returncode == 1, imported.stdout + imported.stderr
    reasons = re.findall(r"^\s*(\d+) x (0x[0-9A-F]{4} .*)$", imported.stdout, re.MULTILINE)
    assert [reason for _, reason in reasons] == ["0xA700 out of resources: disk full"]
    failed = int(reasons[0][0])
    assert 0 < failed < 8
    stored_match = re.search(r"\bstored\W+(\d+)\b", imported.stdout)
    assert stored_match and int(stored_match.group(1)) == 8 - failed, imported.stdout


def test_a_full_disk_under_the_sqlite_index_answers_a700(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "index-disk", "2m") as index_disk:
        server = server_factory(database_url=f"sqlite:///{index_disk / 'index.sqlite'}")
        assert store_all(server, [ct_dataset()]) == [(0, "")]
        fill(index_disk)
        comments = "a comment the index keeps " * 400  # 10 KiB in the patient row
        datasets = [ct_dataset(patient_id=f"FULL{n}", PatientComments=comments) for n in range(200)]
        answers = store_all(server, datasets)
        refusals = [answer for answer in answers if answer[0] != 0]
        assert refusals, "the index never ran out of disk"
        assert set(refusals) == {(0xA700, "index unavailable")}
        assert "database or disk is full" in server.log()
        server.kill()


def test_a_locked_index_answers_a700_then_stores_again(
    server_factory: ServerFactory, postgres_url: str
) -> None:
    """An administrator holds an exclusive lock on the instance table: the store
    waits for the lock a while (10 s, well within the peer's DIMSE timeout), then
    answers A700; once the lock is gone, stores succeed again."""
    server = server_factory(database_url=postgres_url)
    assert store_all(server, [ct_dataset()]) == [(0, "")]
    admin = sa.create_engine(postgres_url)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql("LOCK TABLE instance IN ACCESS EXCLUSIVE MODE")
            answers = store_all(server, [ct_dataset(patient_id="LOCKED")])
            connection.rollback()
    finally:
        admin.dispose()
    assert answers == [(0xA700, "index unavailable")]
    assert "lock timeout" in server.log()
    assert store_all(server, [ct_dataset(patient_id="UNLOCKED")]) == [(0, "")]
    assert stored(server) == 2


# C000 -------------------------------------------------------------------------------


def refuse_instances(database_url: str) -> None:
    """A trigger that makes the index refuse every new instance row."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_instances BEFORE INSERT ON instance "
                f"BEGIN SELECT RAISE(ABORT, '{TRIGGER_MESSAGE}'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_instances() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{TRIGGER_MESSAGE}'; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_instances BEFORE INSERT ON instance "
                "FOR EACH ROW EXECUTE FUNCTION refuse_instances()"
            )
    engine.dispose()


def accept_instances(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER refuse_instances")
        else:
            connection.exec_driver_sql("DROP TRIGGER refuse_instances ON instance")
    engine.dispose()


def test_an_index_that_refuses_the_update_answers_c000(
    server_factory: ServerFactory, database_url: str, tmp_path: Path
) -> None:
    server = server_factory(database_url=database_url)
    assert store_all(server, [ct_dataset()]) == [(0, "")]
    refuse_instances(database_url)
    answers = store_all(server, [ct_dataset(patient_id="TRIG1")])
    by_dcmtk = storescu(server, save(ct_dataset(patient_id="TRIG2"), tmp_path / "t.dcm"))
    stow = post(server, multipart(dicom_parts(part10(ct_dataset(patient_id="TRIG3")))))
    assert answers == [(0xC000, f"index update failed: {TRIGGER_MESSAGE}")]
    assert by_dcmtk == (0xC000, f"index update failed: {TRIGGER_MESSAGE}")
    assert stow.status_code == 409
    assert value(sequence(stow.json(), FAILED_SOP)[0], FAILURE_REASON) == 0xC000
    assert "index update failed for" in server.log() and TRIGGER_MESSAGE in server.log()
    assert len(list((server.data_dir / "storage").rglob("*.dcm"))) == 1  # no orphan file
    accept_instances(database_url)
    assert store_all(server, [ct_dataset(patient_id="TRIG4")]) == [(0, "")]
    assert stored(server) == 2
