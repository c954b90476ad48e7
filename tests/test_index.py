"""The index behind ingest, on SQLite and on PostgreSQL: counters, duplicates, identity."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from conftest import PYDICOM_FILES, ct_dataset, dataset_bytes, save
from pydicom import Dataset, dcmread
from pydicom.uid import GrayscaleSoftcopyPresentationStateStorage, generate_uid

from pacsnode.archive import core
from pacsnode.archive.attributes import Level
from pacsnode.archive.core import Archive
from pacsnode.archive.database import alembic_config, aware
from pacsnode.archive.ingest import IngestResult, Outcome, Received
from pacsnode.archive.matching import Query
from pacsnode.archive.prepared import PreparedStatements, cursor_of
from pacsnode.archive.schema import instance, patient, sequence_value, series, study
from pacsnode.config import DuplicatePolicy, Settings

DATASET_DOES_NOT_MATCH = 0xA900
DUPLICATE_REFUSED = 0x0111


@pytest.fixture
def archive(tmp_path: Path, database_url: str) -> Iterator[Archive]:
    opened = Archive(Settings(data_dir=tmp_path / "data", database_url=database_url))
    yield opened
    opened.close()


def ingest(
    archive: Archive, ds: Dataset, policy: DuplicatePolicy = "keep"
) -> tuple[IngestResult, Path]:
    """Save ``ds`` as a Part 10 file outside the archive and ingest it."""
    folder = archive.settings.data_dir.parent / "incoming"
    folder.mkdir(exist_ok=True)
    source = save(ds, folder / f"{uuid.uuid4().hex}.dcm")
    return archive.ingest(Received(source, duplicate_policy=policy)), source


def rows(archive: Archive, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
    with archive.database.reader.connect() as connection:
        result = connection.execute(sa.select(table).where(*where).order_by(table.c.pk))
        return [dict(row._mapping) for row in result]


def one(archive: Archive, table: sa.Table, *where: Any) -> dict[str, Any]:
    found = rows(archive, table, *where)
    assert len(found) == 1, found
    return found[0]


def counters(row: dict[str, Any]) -> dict[str, int]:
    names = ("num_studies", "num_series", "num_instances")
    return {name: row[name] for name in names if name in row}


def stored_files(archive: Archive) -> list[Path]:
    return sorted(archive.storage.root.rglob("*.dcm"))


def stored_file(archive: Archive, sop_instance_uid: str) -> Path:
    found = archive.index.find_instance(sop_instance_uid)
    assert found is not None, f"{sop_instance_uid} is not indexed"
    return archive.storage.absolute(found.file_path)


def test_counters_and_modalities_over_two_studies(archive: Archive) -> None:
    study_a, study_b = generate_uid(), generate_uid()
    ct_series, pr_series, b_series = generate_uid(), generate_uid(), generate_uid()
    datasets = [
        ct_dataset(study=study_a, series=ct_series, InstanceNumber=1),
        ct_dataset(study=study_a, series=ct_series, InstanceNumber=2),
        ct_dataset(
            study=study_a,
            series=pr_series,
            modality="PR",
            sop_class=GrayscaleSoftcopyPresentationStateStorage,
        ),
        ct_dataset(study=study_b, series=b_series),
    ]
    for ds in datasets:
        result, _ = ingest(archive, ds)
        assert (result.status, result.outcome) == (0x0000, Outcome.STORED), result

    assert counters(one(archive, patient, patient.c.patient_id == "PAT001")) == {
        "num_studies": 2,
        "num_series": 3,
        "num_instances": 4,
    }
    first = one(archive, study, study.c.study_instance_uid == study_a)
    assert counters(first) == {"num_series": 2, "num_instances": 3}
    assert first["modalities_in_study"] == "CT\\PR"
    second = one(archive, study, study.c.study_instance_uid == study_b)
    assert counters(second) == {"num_series": 1, "num_instances": 1}
    assert second["modalities_in_study"] == "CT"
    by_series = {row["series_instance_uid"]: row["num_instances"] for row in rows(archive, series)}
    assert by_series == {ct_series: 2, pr_series: 1, b_series: 1}
    stats = archive.index.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (1, 2, 3, 4)
    assert stats.bytes == sum(path.stat().st_size for path in stored_files(archive))


def two_copies() -> tuple[Dataset, Dataset]:
    first = ct_dataset(patient_name="FIRST^COPY")
    second = ct_dataset(
        patient_name="SECOND^COPY",
        study=first.StudyInstanceUID,
        series=first.SeriesInstanceUID,
        instance=first.SOPInstanceUID,
    )
    return first, second


def all_counters(archive: Archive) -> list[dict[str, int]]:
    return [counters(one(archive, table)) for table in (patient, study, series)]


ONE_OF_EACH = [
    {"num_studies": 1, "num_series": 1, "num_instances": 1},
    {"num_series": 1, "num_instances": 1},
    {"num_instances": 1},
]


def test_duplicate_kept(archive: Archive) -> None:
    first, second = two_copies()
    stored, first_source = ingest(archive, first)
    assert stored.outcome == Outcome.STORED
    uid = str(first.SOPInstanceUID)
    kept_file = stored_file(archive, uid)

    result, _ = ingest(archive, second, "keep")

    assert (result.status, result.outcome) == (0x0000, Outcome.DUPLICATE)
    assert result.sop_instance_uid == uid
    assert stored_file(archive, uid) == kept_file
    assert str(dcmread(kept_file).PatientName) == "FIRST^COPY"
    assert dataset_bytes(kept_file) == dataset_bytes(first_source)
    assert stored_files(archive) == [kept_file]  # the second copy left no file behind
    assert len(rows(archive, instance)) == 1
    assert all_counters(archive) == ONE_OF_EACH


def test_duplicate_overwritten(archive: Archive) -> None:
    first, second = two_copies()
    ingest(archive, first)
    uid = str(first.SOPInstanceUID)
    old_file = stored_file(archive, uid)

    result, second_source = ingest(archive, second, "overwrite")

    assert (result.status, result.outcome) == (0x0000, Outcome.REPLACED)
    new_file = stored_file(archive, uid)
    assert new_file != old_file
    assert not old_file.exists()
    assert str(dcmread(new_file).PatientName) == "SECOND^COPY"
    assert dataset_bytes(new_file) == dataset_bytes(second_source)
    assert stored_files(archive) == [new_file]
    assert len(rows(archive, instance)) == 1
    assert all_counters(archive) == ONE_OF_EACH
    assert archive.index.stats().bytes == new_file.stat().st_size


def test_duplicate_refused(archive: Archive) -> None:
    first, second = two_copies()
    _, first_source = ingest(archive, first)
    uid = str(first.SOPInstanceUID)
    kept_file = stored_file(archive, uid)

    result, _ = ingest(archive, second, "refuse")

    assert (result.status, result.outcome) == (DUPLICATE_REFUSED, Outcome.REFUSED)
    assert not result.ok
    assert stored_file(archive, uid) == kept_file
    assert str(dcmread(kept_file).PatientName) == "FIRST^COPY"
    assert dataset_bytes(kept_file) == dataset_bytes(first_source)
    assert stored_files(archive) == [kept_file]
    assert all_counters(archive) == ONE_OF_EACH


def test_overwrite_of_the_only_instance_of_a_series_keeps_counters(archive: Archive) -> None:
    study_uid, ct_series, pr_series = generate_uid(), generate_uid(), generate_uid()
    for number in (1, 2):
        ingest(archive, ct_dataset(study=study_uid, series=ct_series, InstanceNumber=number))
    pr = ct_dataset(
        study=study_uid,
        series=pr_series,
        modality="PR",
        sop_class=GrayscaleSoftcopyPresentationStateStorage,
        SeriesDescription="FIRST",
    )
    ingest(archive, pr)
    pr.SeriesDescription = "SECOND"

    result, _ = ingest(archive, pr, "overwrite")

    assert result.outcome == Outcome.REPLACED
    assert counters(one(archive, patient)) == {
        "num_studies": 1,
        "num_series": 2,
        "num_instances": 3,
    }
    the_study = one(archive, study)
    assert counters(the_study) == {"num_series": 2, "num_instances": 3}
    assert the_study["modalities_in_study"] == "CT\\PR"
    assert one(archive, series, series.c.series_instance_uid == ct_series)["num_instances"] == 2
    replaced = one(archive, series, series.c.series_instance_uid == pr_series)
    assert replaced["num_instances"] == 1
    assert replaced["series_description"] == "SECOND"
    assert len(stored_files(archive)) == 3
    stats = archive.index.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (1, 1, 2, 3)


def test_overwrite_with_an_edited_patient_updates_the_index(archive: Archive) -> None:
    """The overwrite policy exists for re-sent edits (CDRClient): the index follows the edit."""
    first = ct_dataset(patient_id="EDIT1", patient_name="OLD^NAME", StudyDescription="OLD")
    second = ct_dataset(
        patient_id="EDIT1",
        patient_name="NEW^NAME",
        StudyDescription="NEW",
        study=first.StudyInstanceUID,
        series=first.SeriesInstanceUID,
        instance=first.SOPInstanceUID,
    )
    ingest(archive, first)

    result, _ = ingest(archive, second, "overwrite")

    assert result.outcome == Outcome.REPLACED
    assert str(dcmread(stored_file(archive, str(first.SOPInstanceUID))).PatientName) == "NEW^NAME"
    assert one(archive, study)["study_description"] == "NEW"
    edited = one(archive, patient, patient.c.patient_id == "EDIT1")
    assert (edited["patient_name"], edited["patient_name_ci"]) == ("NEW^NAME", "NEW^NAME")


def test_overwrite_with_a_corrected_patient_id_leaves_no_empty_patient(archive: Archive) -> None:
    first = ct_dataset(patient_id="WRONG", patient_name="DOE^JANE")
    second = ct_dataset(
        patient_id="RIGHT",
        patient_name="DOE^JANE",
        study=first.StudyInstanceUID,
        series=first.SeriesInstanceUID,
        instance=first.SOPInstanceUID,
    )
    ingest(archive, first)

    result, _ = ingest(archive, second, "overwrite")

    assert result.outcome == Outcome.REPLACED
    moved = one(archive, study)
    assert one(archive, patient, patient.c.pk == moved["patient_pk"])["patient_id"] == "RIGHT"
    assert [row["patient_id"] for row in rows(archive, patient)] == ["RIGHT"]
    assert archive.index.stats().patients == 1


def test_concurrent_overwrites_of_one_instance(archive: Archive) -> None:
    """Eight senders re-send one instance at once under the overwrite policy."""
    ds = ct_dataset(patient_id="RESENT")
    folder = archive.settings.data_dir.parent / "resent"
    folder.mkdir()
    sources = [save(ds, folder / f"{number}.dcm") for number in range(8)]
    start = threading.Barrier(len(sources))

    def resend(source: Path) -> IngestResult:
        start.wait(timeout=60)
        return archive.ingest(Received(source, duplicate_policy="overwrite"))

    with ThreadPoolExecutor(len(sources)) as pool:
        results = list(pool.map(resend, sources))

    assert [r.status for r in results] == [0x0000] * 8, [r.comment for r in results]
    assert sorted(r.outcome for r in results) == [Outcome.REPLACED] * 7 + [Outcome.STORED]
    assert len(rows(archive, instance)) == 1
    assert all_counters(archive) == ONE_OF_EACH
    files = stored_files(archive)
    assert files == [stored_file(archive, str(ds.SOPInstanceUID))]  # no orphan copies
    assert dataset_bytes(files[0]) == dataset_bytes(sources[0])


def test_issuer_of_patient_id_separates_patients(archive: Archive) -> None:
    for issuer in ("HOSPITAL_A", "HOSPITAL_B"):
        ds = ct_dataset(patient_id="SAME", IssuerOfPatientID=issuer)
        assert ingest(archive, ds)[0].ok

    found = rows(archive, patient, patient.c.patient_id == "SAME")
    assert sorted(row["issuer_of_patient_id"] for row in found) == ["HOSPITAL_A", "HOSPITAL_B"]
    assert [row["num_studies"] for row in found] == [1, 1]


def test_same_patient_id_and_issuer_is_one_patient(archive: Archive) -> None:
    for _ in range(2):
        ds = ct_dataset(patient_id="SAME", IssuerOfPatientID="HOSPITAL_A")
        assert ingest(archive, ds)[0].ok

    found = one(archive, patient, patient.c.patient_id == "SAME")
    assert found["issuer_of_patient_id"] == "HOSPITAL_A"
    assert counters(found) == {"num_studies": 2, "num_series": 2, "num_instances": 2}
    assert len(rows(archive, study, study.c.patient_pk == found["pk"])) == 2


def test_patient_id_without_issuer_is_not_merged_with_an_issued_one(archive: Archive) -> None:
    assert ingest(archive, ct_dataset(patient_id="SAME"))[0].ok
    assert ingest(archive, ct_dataset(patient_id="SAME", IssuerOfPatientID="HOSPITAL_A"))[0].ok

    found = rows(archive, patient, patient.c.patient_id == "SAME")
    assert sorted(row["issuer_of_patient_id"] for row in found) == ["", "HOSPITAL_A"]


CHARSET_FILES = ["chrH31.dcm", "chrRuss.dcm", "chrGreek.dcm", "chrX1.dcm"]


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_patient_names_are_decoded_with_their_character_set(archive: Archive, name: str) -> None:
    source = PYDICOM_FILES / "charset_files" / name
    expected = pydicom.dcmread(source)

    result = archive.ingest(Received(source))

    assert (result.status, result.outcome) == (0x0000, Outcome.STORED), result
    the_study = one(archive, study, study.c.study_instance_uid == expected.StudyInstanceUID)
    row = one(archive, patient, patient.c.pk == the_study["patient_pk"])
    assert row["patient_name"] == str(expected.PatientName)
    assert row["patient_name_ci"] == str(expected.PatientName).upper()
    assert not row["patient_name"].isascii()
    stored = stored_file(archive, str(expected.SOPInstanceUID))
    assert dataset_bytes(stored) == dataset_bytes(source)


def test_eight_threads_fill_one_new_study_at_once(archive: Archive) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    folder = archive.settings.data_dir.parent / "concurrent"
    folder.mkdir()
    sources = [
        save(
            ct_dataset(study=study_uid, series=series_uid, InstanceNumber=number),
            folder / f"{number}.dcm",
        )
        for number in range(40)
    ]
    threads = 8
    start = threading.Barrier(threads)

    def ingest_share(share: list[Path]) -> list[IngestResult]:
        start.wait(timeout=60)  # every thread begins with the study not yet indexed
        return [archive.ingest(Received(path)) for path in share]

    with ThreadPoolExecutor(threads) as pool:
        shares = [sources[i::threads] for i in range(threads)]
        results = [r for batch in pool.map(ingest_share, shares) for r in batch]

    assert len(results) == 40
    assert [r.status for r in results] == [0x0000] * 40, [r.comment for r in results]
    assert {r.outcome for r in results} == {Outcome.STORED}
    assert counters(one(archive, patient)) == {
        "num_studies": 1,
        "num_series": 1,
        "num_instances": 40,
    }
    the_study = one(archive, study)
    assert the_study["study_instance_uid"] == study_uid
    assert counters(the_study) == {"num_series": 1, "num_instances": 40}
    assert one(archive, series)["num_instances"] == 40
    assert len(rows(archive, instance)) == 40
    assert len(stored_files(archive)) == 40


def alembic_versions(archive: Archive) -> list[str]:
    with archive.database.reader.connect() as connection:
        return list(
            connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        )


def head_revision() -> str:
    config = alembic_config("sqlite://")
    return str(ScriptDirectory.from_config(config).get_current_head())


def test_schema_is_created_by_alembic_and_reopening_changes_nothing(
    archive: Archive, tmp_path: Path, database_url: str
) -> None:
    assert alembic_versions(archive) == [head_revision()]
    ds = ct_dataset()
    result, source = ingest(archive, ds)
    assert result.ok
    tables = sorted(sa.inspect(archive.database.reader).get_table_names())
    assert {"alembic_version", "patient", "study", "series", "instance"} <= set(tables)
    before = archive.index.stats()
    rows_before = {t.name: rows(archive, t) for t in (patient, study, series, instance)}

    again = Archive(Settings(data_dir=tmp_path / "data", database_url=database_url))
    try:
        assert alembic_versions(again) == [head_revision()]
        assert sorted(sa.inspect(again.database.reader).get_table_names()) == tables
        assert again.index.stats() == before
        assert {t.name: rows(again, t) for t in (patient, study, series, instance)} == rows_before
        found = again.index.find_instance(str(ds.SOPInstanceUID))
        assert found is not None
        assert dataset_bytes(again.storage.absolute(found.file_path)) == dataset_bytes(source)
    finally:
        again.close()


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_a_missing_identifying_uid_is_refused_with_a900_and_nothing_indexed(
    archive: Archive, missing: str
) -> None:
    """CDRServer's DATA_MISMATCH_ERROR: critical UIDs missing from the image."""
    ds = ct_dataset()
    sop_instance_uid = str(ds.SOPInstanceUID)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid  # File Meta still names it
    delattr(ds, missing)

    result, _ = ingest(archive, ds)

    assert (result.status, result.outcome) == (DATASET_DOES_NOT_MATCH, Outcome.FAILED)
    assert result.comment == f"{missing} is missing"
    assert archive.index.find_instance(sop_instance_uid) is None
    stats = archive.index.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (0, 0, 0, 0)
    assert stored_files(archive) == []


def test_revision_0002_indexes_stored_sequences_and_normalises_times(database_url: str) -> None:
    """An index written by revision 0001 gains sequence values and colon-free times."""
    engine = sa.create_engine(database_url)
    command.upgrade(alembic_config(database_url), "0001")
    now = datetime.now(UTC)
    request = [{"00401001": {"vr": "SH", "Value": ["RP7"]}}]
    with engine.begin() as connection:

        def insert(table: str, **values: Any) -> int:
            columns = ", ".join(values)
            names = ", ".join(f":{name}" for name in values)
            statement = f"INSERT INTO {table} ({columns}, created_at, updated_at) "
            statement += f"VALUES ({names}, :now, :now) RETURNING pk"
            return int(connection.execute(sa.text(statement), {**values, "now": now}).scalar())

        patient_pk = insert("patient", patient_id="P", issuer_of_patient_id="")
        study_pk = insert(
            "study", patient_pk=patient_pk, study_instance_uid="1.2.3", study_time="10:15"
        )
        series_pk = insert(
            "series",
            study_pk=study_pk,
            series_instance_uid="1.2.3.4",
            request_attributes_sequence=json.dumps(request),
        )
    command.upgrade(alembic_config(database_url), "head")
    with engine.connect() as connection:
        values = connection.execute(sa.select(sequence_value)).mappings().all()
        time = connection.execute(sa.select(study.c.study_time)).scalar()
    engine.dispose()
    assert [(v["level"], v["owner_pk"], v["path"], v["value"]) for v in values] == [
        ("series", series_pk, "RequestedProcedureID", "RP7")
    ]
    assert time == "101500"


def test_revision_0008_counts_the_ingest_rate_from_an_index(archive: Archive) -> None:
    """The dashboard's count of the instances received since a moment reads the index
    ``ix_instance_received_at``, not the whole instance table."""
    reader = archive.database.reader
    indexes = {
        index["name"]: index["column_names"] for index in sa.inspect(reader).get_indexes("instance")
    }
    assert indexes["ix_instance_received_at"] == ["received_at"]
    query = "SELECT count(*) FROM instance WHERE received_at >= '2026-01-01'"
    with reader.connect() as connection:
        if reader.dialect.name == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").all()
        else:  # the planner would scan a table this small: ask whether it can use the index
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = connection.exec_driver_sql(f"EXPLAIN {query}").all()
    assert "ix_instance_received_at" in " ".join(str(row) for row in plan), plan
    assert ingest(archive, ct_dataset())[0].ok
    assert archive.index.received_since(datetime(2000, 1, 1, tzinfo=UTC)) == 1
    assert archive.index.received_since(datetime(2999, 1, 1, tzinfo=UTC)) == 0


_TOUCH = (
    sa.update(instance)
    .where(instance.c.sop_instance_uid == sa.bindparam("uid"))
    .values(received_at=sa.bindparam("at"))
)
_FIRST_UID = sa.select(instance.c.sop_instance_uid).order_by(instance.c.pk).limit(1)
_INSERT = sa.insert(instance)


def test_statements_on_the_dbapi_cursor_bind_and_fail_as_through_sqlalchemy(
    archive: Archive,
) -> None:
    """The hot path's statements run on the DBAPI cursor (archive/prepared.py): their
    values go through the column types as SQLAlchemy's would, a value compiled into
    the statement (a LIMIT) is bound, and a broken unique key is SQLAlchemy's
    IntegrityError, on which Index.add runs a transaction again on PostgreSQL."""
    ds = ct_dataset()
    assert ingest(archive, ds)[0].ok
    statements = PreparedStatements(archive.database.writer.dialect)
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with archive.database.writer.begin() as connection:
        cursor = cursor_of(connection)
        statements(_TOUCH).run(cursor, {"uid": ds.SOPInstanceUID, "at": moment})
        assert statements(_FIRST_UID).run(cursor, {}).fetchone()[0] == ds.SOPInstanceUID
    # Found by SQLAlchemy's own binding of the same moment: stored in the same form.
    row = one(archive, instance, instance.c.received_at == moment)
    assert (row["sop_instance_uid"], aware(row["received_at"])) == (ds.SOPInstanceUID, moment)
    del row["pk"]
    with pytest.raises(sa.exc.IntegrityError), archive.database.writer.begin() as connection:
        statements(_INSERT, tuple(row)).run(cursor_of(connection), row)
    assert len(rows(archive, instance)) == 1


def test_a_search_on_connections_the_server_closed_is_answered(archive: Archive) -> None:
    """Searches read without pinging the connection first (a round trip of its own):
    after PostgreSQL ends every session, as a restart does, the next search still
    answers, on a new connection."""
    if archive.database.writer.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to close connections")
    assert ingest(archive, ct_dataset(patient_id="AFTER"))[0].ok
    query = Query(Level.STUDY, {"PatientID": "AFTER"}, patient_root=False)
    assert len(list(archive.find(query))) == 1  # the quick reader's pool holds one now
    with archive.database.writer.connect() as connection:
        ended = connection.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    assert ended
    assert len(list(archive.find(query))) == 1


def test_a_search_beyond_the_first_read_returns_every_match(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads a search's first rows in one go and streams only longer ones:
    either way every match comes back once, and offset and limit hold."""
    quick = 20  # instead of 1,000, for 25 studies rather than 1,005
    monkeypatch.setattr(core, "QUICK_ROWS", quick)
    total = quick + 5
    for number in range(total):
        assert ingest(archive, ct_dataset(patient_id="MANY", rows=8, InstanceNumber=number))[0].ok
    query = Query(Level.STUDY, {"StudyInstanceUID": "", "PatientID": "MANY"}, patient_root=False)

    def found(offset: int | None = None, limit: int | None = None) -> list[str]:
        return [row["study.study_instance_uid"] for row in archive.find(query, offset, limit)]

    every = found()
    assert len(every) == len(set(every)) == total
    assert len(found(limit=quick + 3)) == quick + 3
    assert len(found(offset=3, limit=quick + 10)) == total - 3
    assert len(found(limit=4)) == 4
