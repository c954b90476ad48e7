"""Deleting patients, studies, series and instances through the core call every door
uses, on SQLite and PostgreSQL: soft deletion hides and keeps, hard deletion removes
rows and files, counters stay exact, and both are audited as DICOM Study Deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ct_dataset
from pydicom.uid import generate_uid
from test_index import counters, ingest, one, rows, stored_files

from pacsnode import audit
from pacsnode.archive.attributes import Level
from pacsnode.archive.core import Archive
from pacsnode.archive.deletion import AmbiguousPatient, NothingToDelete, Target
from pacsnode.archive.index import SOFT_DELETED
from pacsnode.archive.ingest import Outcome
from pacsnode.archive.matching import Query, build, search
from pacsnode.archive.retrieve import locate
from pacsnode.archive.schema import instance, patient, series, study
from pacsnode.config import Settings

USER = audit.Actor("alice", "127.0.0.1", requestor=True)


@pytest.fixture
def archive(tmp_path: Path, database_url: str) -> Iterator[Archive]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    opened = Archive(settings)
    audit.configure(settings, opened.database)
    yield opened
    audit.close()
    opened.close()


def found_studies(archive: Archive) -> list[str]:
    """Study Instance UIDs the C-FIND and QIDO-RS engine finds."""
    query = Query(Level.STUDY, {"StudyInstanceUID": ""}, patient_root=False, relational=True)
    with archive.database.reader.connect() as connection:
        return [row["study.study_instance_uid"] for row in search(connection, build(query))]


def two_studies(archive: Archive) -> dict[str, Any]:
    """Patient P1: study A (CT series of 2, SR series of 1) and study B (1 MR)."""
    uids = {"a": generate_uid(), "b": generate_uid(), "ct": generate_uid(), "sr": generate_uid()}
    made = [
        ct_dataset(study=uids["a"], series=uids["ct"], patient_id="P1"),
        ct_dataset(study=uids["a"], series=uids["ct"], patient_id="P1", InstanceNumber=2),
        ct_dataset(study=uids["a"], series=uids["sr"], patient_id="P1", modality="SR"),
        ct_dataset(study=uids["b"], patient_id="P1", modality="MR"),
    ]
    for ds in made:
        assert ingest(archive, ds)[0].outcome is Outcome.STORED
    uids["instances"] = [str(ds.SOPInstanceUID) for ds in made]
    return uids


def deletions_audited(archive: Archive) -> list[dict[str, Any]]:
    """The DICOM Study Deleted messages of the local audit log."""
    audit.close()  # writes what is queued
    folder = archive.settings.data_dir / "audit"
    lines = [json.loads(line) for file in sorted(folder.glob("*.log")) for line in file.open()]
    return [line for line in lines if line["event_id"] == "110105"]


def test_soft_delete_of_a_study_hides_it_everywhere_and_keeps_it(archive: Archive) -> None:
    uids = two_studies(archive)
    files_before = stored_files(archive)

    deleted = archive.deletion.delete(Target("study", uids["a"]), False, USER)

    assert (deleted.instances, deleted.series, deleted.studies) == (3, 2, (uids["a"],))
    assert found_studies(archive) == [uids["b"]]
    assert locate(archive, uids["a"]) == []
    assert counters(one(archive, patient, patient.c.patient_id == "P1")) == {
        "num_studies": 1,
        "num_series": 1,
        "num_instances": 1,
    }
    assert counters(one(archive, study, study.c.study_instance_uid == uids["a"])) == {
        "num_series": 0,
        "num_instances": 0,
    }
    hidden = rows(archive, instance, instance.c.rejection == SOFT_DELETED)
    assert sorted(row["sop_instance_uid"] for row in hidden) == sorted(uids["instances"][:3])
    assert stored_files(archive) == files_before  # restorable: nothing left the disk
    stats = archive.index.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (1, 1, 1, 1)
    assert (stats.hidden, stats.bytes) == (3, sum(p.stat().st_size for p in files_before))
    with pytest.raises(NothingToDelete, match=f"^no visible study {uids['a']} in the archive$"):
        archive.deletion.delete(Target("study", uids["a"]), False, USER)
    [audited] = deletions_audited(archive)
    assert audited["action"] == "D" and audited["user"] == "alice"
    assert audited["studies"] == [uids["a"]] and audited["patients"] == ["P1"]
    assert "soft delete of study" in audited["xml"]


def test_hard_delete_of_a_soft_deleted_study_removes_rows_and_files(archive: Archive) -> None:
    uids = two_studies(archive)
    archive.deletion.delete(Target("study", uids["a"]), False, USER)

    deleted = archive.deletion.delete(Target("study", uids["a"]), True, USER)

    assert deleted.instances == 3 and deleted.hard
    assert rows(archive, study, study.c.study_instance_uid == uids["a"]) == []
    assert rows(archive, series, series.c.series_instance_uid.in_([uids["ct"], uids["sr"]])) == []
    assert len(rows(archive, instance)) == 1
    assert len(stored_files(archive)) == 1
    assert counters(one(archive, patient, patient.c.patient_id == "P1")) == {
        "num_studies": 1,
        "num_series": 1,
        "num_instances": 1,
    }
    assert [entry["xml"].count("hard delete") for entry in deletions_audited(archive)] == [0, 1]


def test_deleting_a_series_keeps_the_study_and_its_modalities_exact(archive: Archive) -> None:
    uids = two_studies(archive)

    archive.deletion.delete(Target("series", uids["sr"]), False, USER)

    row = one(archive, study, study.c.study_instance_uid == uids["a"])
    assert (row["num_series"], row["num_instances"], row["modalities_in_study"]) == (1, 2, "CT")
    archive.deletion.delete(Target("instance", uids["instances"][0]), True, USER)
    row = one(archive, study, study.c.study_instance_uid == uids["a"])
    assert (row["num_series"], row["num_instances"]) == (1, 1)
    ct = one(archive, series, series.c.series_instance_uid == uids["ct"])
    assert ct["num_instances"] == 1
    assert len(stored_files(archive)) == 3


def test_a_deleted_instance_sent_again_is_stored_anew(archive: Archive) -> None:
    uids = two_studies(archive)
    archive.deletion.delete(Target("study", uids["b"]), False, USER)
    resent = ct_dataset(study=uids["b"], patient_id="P1", modality="MR")
    resent.SOPInstanceUID = uids["instances"][3]

    result, _source = ingest(archive, resent)

    assert result.outcome is Outcome.REPLACED
    assert sorted(found_studies(archive)) == sorted([uids["a"], uids["b"]])
    assert counters(one(archive, patient, patient.c.patient_id == "P1")) == {
        "num_studies": 2,
        "num_series": 3,
        "num_instances": 4,
    }
    assert len(stored_files(archive)) == 4  # the old copy's file went with its row


def test_a_new_instance_in_a_deleted_series_makes_it_appear_once(archive: Archive) -> None:
    uids = two_studies(archive)
    archive.deletion.delete(Target("study", uids["a"]), False, USER)

    later = ct_dataset(study=uids["a"], series=uids["sr"], patient_id="P1", modality="SR")
    assert ingest(archive, later)[0].outcome is Outcome.STORED

    row = one(archive, study, study.c.study_instance_uid == uids["a"])
    assert (row["num_series"], row["num_instances"], row["modalities_in_study"]) == (1, 1, "SR")
    assert counters(one(archive, patient, patient.c.patient_id == "P1"))["num_studies"] == 2


def test_a_patient_is_deleted_by_id_and_issuer(archive: Archive) -> None:
    for issuer in ("HOSP_A", "HOSP_B"):
        ds = ct_dataset(patient_id="SHARED", IssuerOfPatientID=issuer)
        assert ingest(archive, ds)[0].outcome is Outcome.STORED

    with pytest.raises(AmbiguousPatient) as ambiguous:
        archive.deletion.select(Target("patient", "SHARED"))
    assert str(ambiguous.value) == (
        "patient ID SHARED is used with the issuers 'HOSP_A', 'HOSP_B': name the issuer"
    )
    deleted = archive.deletion.delete(Target("patient", "SHARED", "HOSP_A"), True, USER)

    assert deleted.instances == 1
    [left] = rows(archive, patient)
    assert left["issuer_of_patient_id"] == "HOSP_B"
    with pytest.raises(NothingToDelete, match=r"^no patient NOBODY in the archive$"):
        archive.deletion.select(Target("patient", "NOBODY"), hard=True)


def test_soft_delete_leaves_an_iocm_rejection_alone(archive: Archive) -> None:
    uids = two_studies(archive)
    with archive.database.writer.begin() as connection:
        pk = connection.execute(
            sa.select(instance.c.pk).where(instance.c.sop_instance_uid == uids["instances"][2])
        ).scalar_one()
        archive.index.set_hidden(connection, pk, "113001")

    deleted = archive.deletion.delete(Target("study", uids["a"]), False, USER)

    assert deleted.instances == 2
    note_hidden = one(archive, instance, instance.c.sop_instance_uid == uids["instances"][2])
    assert note_hidden["rejection"] == "113001"
    assert not archive.rejections.restore(uids["instances"][0])  # a deletion is no rejection
    assert found_studies(archive) == [uids["b"]]
