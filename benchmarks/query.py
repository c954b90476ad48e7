"""Query/Retrieve: C-FIND latency on a large index, and C-FIND and C-MOVE next to Orthanc.

    python benchmarks/query.py [--instances 1000000] [--queries 50] [--backends sqlite,postgresql]

Large index. A synthetic archive of ``--instances`` instances (10 per study in one series,
a patient for every 3.3 studies, a few hundred surnames, study dates over ten years) is
written through pacsnode's own index code: ``Index.add`` with the rows that ingest
builds from a data set (``ingest._level_rows``), so every column, folded copy and index
that the server keeps is there. Only durability is relaxed while filling (SQLite
``synchronous=OFF``, PostgreSQL ``synchronous_commit=off``); PostgreSQL is vacuumed and
analysed after the fill, as autovacuum would. The built index is cached in
``benchmarks/.cache/query`` (SQLite file, PostgreSQL database ``pacsnode_bench_*``), keyed
by the schema (Alembic head, migration files, table and index definitions) and the size,
so a second run reuses it; an interrupted fill resumes. Then a real ``pacsnode serve``
answers STUDY-level Study Root C-FIND on one open association: by PatientName
wildcard (``SURNAME*``), StudyDate range (1 to 3 days), AccessionNumber and PatientID,
each ``--queries`` times with varying values; median and 95th percentile in ms, and how
many studies the queries matched.

Small archive, next to Orthanc (``TCP_NODELAY=1`` in its environment; with PostgreSQL
configured also Orthanc on PostgreSQL, through Debian's ``orthanc-postgresql`` index
plugin, what pacsnode on PostgreSQL compares with like for like). The same 100
studies (1,000 small instances) and one study of 1,000 CT instances of 512x512 16-bit are
stored with ``storescu`` into pacsnode (SQLite, and PostgreSQL when configured) and into
Orthanc. Then, once the server's processes have gone quiet (pacsnode makes the
DICOMweb metadata of what it received in the background): the same C-FIND latencies on an
open association; C-MOVE of the CT study
(Study Root, STUDY level), timed from the C-MOVE request to its final response (median
of ``--moves``), to three receivers that accept and discard everything: STORESCP, DCMTK
``storescp --ignore`` (TCP_NODELAY=1); DISCARD, a plain pynetdicom Storage SCP
(TCP_NODELAY); and RAWSINK, a few lines of bare sockets that no sender can outrun; and
C-GET of the same study by DCMTK ``getscu --ignore`` (TCP_NODELAY=1). Each receiver's
own ceiling (storescu into it, 16 KiB PDUs) is printed too.

The C-FIND and C-MOVE requestor is pacsnode's own DIMSE engine (it counts C-FIND
answers without decoding them), the same against pacsnode and Orthanc, so that it adds
as little as it can to what is measured.

PostgreSQL: ``--postgres-url`` or ``PACSNODE_BENCH_POSTGRES_URL`` (else
``PACSNODE_TEST_POSTGRES_URL``), a URL of a role that may create databases; without one,
the PostgreSQL measurements are skipped. Figures go to ``benchmarks/results/query.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from common import (
    BENCHMARKS,
    ct_corpus,
    discard_scp,
    getscu_discard,
    orthanc_server,
    pacsnode_serve,
    percentile,
    raw_discard_scp,
    storescp_discard,
    storescu,
    wait_until_quiet,
    workdir,
    write_results,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

# Imported once, at start: the run uses one version of pacsnode even if src/ changes.
from pacsnode.archive.attributes import Level
from pacsnode.archive.database import MIGRATIONS, alembic_config, migrate, open_database
from pacsnode.archive.index import Index
from pacsnode.archive.ingest import _level_rows
from pacsnode.archive.matching import Query, build
from pacsnode.archive.schema import metadata
from pacsnode.archive.schema import study as study_table
from pacsnode.dimse.codec import encode
from pacsnode.dimse.query_scu import move_on
from pacsnode.dimse.scu import Peer, connect, final, request
from pacsnode.net.association import Association
from pacsnode.net.commands import C_ECHO_RQ, C_FIND_RQ
from pacsnode.net.requestor import Proposal

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
CALLING_AE = "BENCHSCU"
ORTHANC_POSTGRESQL = "orthanc postgresql"
ORTHANC_POSTGRESQL_INDEX = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
CHARSET = "ISO_IR 100"

CACHE = BENCHMARKS / ".cache" / "query"
DATA_VERSION = 1
"""Bump when the synthetic archive changes: cached indexes are then rebuilt."""

INSTANCES_PER_STUDY = 10
PATIENTS_PER_STUDY = 0.3  # 100,000 studies of 30,000 patients

# --- the synthetic archive ----------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


_GIVEN_NAMES = _words(
    "JAMES JOHN ROBERT MICHAEL WILLIAM DAVID RICHARD JOSEPH THOMAS CHARLES CHRISTOPHER "
    "DANIEL MATTHEW ANTHONY MARK DONALD STEVEN PAUL ANDREW JOSHUA KENNETH KEVIN BRIAN "
    "GEORGE TIMOTHY RONALD EDWARD JASON JEFFREY RYAN JACOB GARY NICHOLAS ERIC JONATHAN "
    "STEPHEN LARRY JUSTIN SCOTT BRANDON BENJAMIN SAMUEL FRANK GREGORY RAYMOND PATRICK "
    "ALEXANDER JACK DENNIS JERRY TYLER AARON HENRY PETER ADAM MARY PATRICIA JENNIFER "
    "LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN LISA NANCY BETTY MARGARET SANDRA "
    "ASHLEY KIMBERLY EMILY DONNA MICHELLE CAROL AMANDA DOROTHY MELISSA DEBORAH STEPHANIE "
    "REBECCA SHARON LAURA CYNTHIA KATHLEEN AMY ANGELA SHIRLEY ANNA BRENDA PAMELA EMMA "
    "NICOLE HELEN SAMANTHA KATHERINE CHRISTINE DEBRA RACHEL CAROLYN JANET CATHERINE MARIA "
    "HEATHER DIANE RUTH JULIE OLIVIA JOYCE VIRGINIA"
)
_SURNAME_HEADS = _words(
    "AB AD AL AN AR ASH BAL BAR BEL BR CAL CAR CH COL CR DAL DAR DEL DR ED EL FAR FEL GAL "
    "GR HAL HAR HOL JOR KEL LAN MAR MOR NOR OS PAR PEN RAM ROS SAL STAN TOR VAL WAL WEST"
)
_SURNAME_TAILS = "BERG DALE FIELD FORD HURST INGTON KINS LEY MORE NEY RICK SON STEIN TON VILLE WOOD"


def _surnames() -> list[str]:
    """A few hundred distinct surnames, none the beginning of another.

    So that ``SURNAME*`` finds the patients of one surname only.
    """
    names = sorted({head + tail for head in _SURNAME_HEADS for tail in _SURNAME_TAILS.split()})
    return [n for n in names if not any(o != n and o.startswith(n) for o in names)]


SURNAMES = _surnames()
# How common each surname is: the most common about twice the average, as in a town.
_SURNAME_WEIGHTS = 1 / np.sqrt(np.arange(len(SURNAMES)) + 50.0)

_PHYSICIANS = [f"{s}^{g}" for s, g in zip(SURNAMES[::7], _GIVEN_NAMES[::2], strict=False)][:60]
_INSTITUTIONS = ("GENERAL HOSPITAL", "CITY CLINIC", "ST MARY MEDICAL CENTER", "IMAGING CENTER")


@dataclasses.dataclass(frozen=True)
class Modality:
    code: str
    sop_class: str
    weight: float
    size: int
    descriptions: tuple[str, ...]
    body_parts: tuple[str, ...]


MODALITIES = (
    Modality(
        "CR",
        "1.2.840.10008.5.1.4.1.1.1",
        0.30,
        2048,
        ("XR CHEST 2 VIEWS", "XR CHEST 1 VIEW", "XR KNEE 3 VIEWS", "XR HAND 3 VIEWS"),
        ("CHEST", "CHEST", "KNEE", "HAND"),
    ),
    Modality(
        "CT",
        "1.2.840.10008.5.1.4.1.1.2",
        0.25,
        512,
        (
            "CT HEAD W/O CONTRAST",
            "CT CHEST W CONTRAST",
            "CT ABDOMEN PELVIS W CONTRAST",
            "CTA HEAD AND NECK",
            "CT LUMBAR SPINE W/O CONTRAST",
        ),
        ("HEAD", "CHEST", "ABDOMEN", "NECK", "LSPINE"),
    ),
    Modality(
        "MR",
        "1.2.840.10008.5.1.4.1.1.4",
        0.15,
        256,
        ("MRI BRAIN W/WO CONTRAST", "MRI KNEE W/O CONTRAST", "MRI LUMBAR SPINE W/O CONTRAST"),
        ("BRAIN", "KNEE", "LSPINE"),
    ),
    Modality(
        "DX",
        "1.2.840.10008.5.1.4.1.1.1.1",
        0.10,
        2048,
        ("XR FOOT 3 VIEWS", "XR SHOULDER 2 VIEWS", "XR PELVIS 1 VIEW"),
        ("FOOT", "SHOULDER", "PELVIS"),
    ),
    Modality(
        "US",
        "1.2.840.10008.5.1.4.1.1.6.1",
        0.12,
        640,
        ("US ABDOMEN COMPLETE", "US RENAL", "US THYROID"),
        ("ABDOMEN", "KIDNEY", "THYROID"),
    ),
    Modality(
        "MG",
        "1.2.840.10008.5.1.4.1.1.1.2",
        0.08,
        3328,
        ("MAMMO SCREENING BILATERAL", "MAMMO DIAGNOSTIC LEFT"),
        ("BREAST", "BREAST"),
    ),
)
_MANUFACTURERS = ("SIEMENS", "GE MEDICAL SYSTEMS", "PHILIPS", "CANON MEDICAL SYSTEMS")
FIRST_DAY = date(2016, 1, 1)
DAYS = 3653  # ten years of study dates
_UID_NAMESPACE = uuid.UUID("6f1c3a52-6b8e-4ad4-9d0e-5a1f2c3b4d5e")


def _uid(*parts: object) -> str:
    """A deterministic UID (UUID-derived, PS3.5 B.2), the same on every run."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '.'.join(map(str, parts))).int}"


def _day(number: int) -> str:
    return (FIRST_DAY + timedelta(days=int(number))).strftime("%Y%m%d")


class Population:
    """Who and what the archive holds, drawn once from a fixed seed.

    Study ``s`` belongs to patient ``study_patient[s]``; every patient has a study.
    """

    def __init__(self, instances: int, seed: int = 20261124) -> None:
        self.studies = max(1, instances // INSTANCES_PER_STUDY)
        self.instances = self.studies * INSTANCES_PER_STUDY
        self.patients = max(1, round(self.studies * PATIENTS_PER_STUDY))
        rng = np.random.default_rng(seed)
        p, s = self.patients, self.studies
        self.surname = rng.choice(len(SURNAMES), p, p=_SURNAME_WEIGHTS / _SURNAME_WEIGHTS.sum())
        self.given = rng.integers(len(_GIVEN_NAMES), size=p)
        self.middle = rng.integers(-8, 26, size=p)  # a middle initial for about 3 in 4
        self.birth_day = rng.integers(-30000, 1800, size=p)  # 1934 to 2020
        self.sex = rng.integers(2, size=p)
        owners = np.concatenate([np.arange(p), rng.integers(p, size=max(0, s - p))])[:s]
        rng.shuffle(owners)
        self.study_patient = owners
        weekday = np.array(
            [1.0 if (FIRST_DAY + timedelta(d)).weekday() < 5 else 0.3 for d in range(DAYS)]
        )
        self.study_day = rng.choice(DAYS, s, p=weekday / weekday.sum())
        self.study_second = rng.integers(7 * 3600, 19 * 3600, size=s)
        weights = np.array([m.weight for m in MODALITIES])
        self.modality = rng.choice(len(MODALITIES), s, p=weights / weights.sum())
        self.procedure = rng.integers(1000, size=s)
        self.referring = rng.integers(len(_PHYSICIANS), size=s)
        self.site = rng.integers(len(_INSTITUTIONS), size=s)

    def patient_name(self, patient: int) -> str:
        middle = int(self.middle[patient])
        name = f"{SURNAMES[self.surname[patient]]}^{_GIVEN_NAMES[self.given[patient]]}"
        return name + (f"^{chr(65 + middle)}" if middle >= 0 else "")

    @staticmethod
    def patient_id(patient: int) -> str:
        return f"PID{patient:08d}"

    @staticmethod
    def accession(study: int) -> str:
        return f"ACC{study + 1:09d}"

    @staticmethod
    def study_uid(study: int) -> str:
        return _uid("study", study)

    def study_dataset(self, study: int) -> Dataset:
        """Study ``study``'s attributes and those of its first instance."""
        patient = int(self.study_patient[study])
        modality = MODALITIES[self.modality[study]]
        procedure = int(self.procedure[study]) % len(modality.descriptions)
        seconds = int(self.study_second[study])
        study_date = _day(self.study_day[study])
        study_time = f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
        birth = _day(self.birth_day[patient])
        ds = Dataset()
        ds.SpecificCharacterSet = CHARSET
        ds.PatientName = self.patient_name(patient)
        ds.PatientID = self.patient_id(patient)
        ds.IssuerOfPatientID = "HOSPITAL"
        ds.PatientBirthDate = birth
        ds.PatientSex = "MF"[self.sex[patient]]
        ds.StudyInstanceUID = self.study_uid(study)
        ds.StudyDate = study_date
        ds.StudyTime = study_time
        ds.AccessionNumber = self.accession(study)
        ds.StudyID = str(study % 100000 + 1)
        ds.ReferringPhysicianName = _PHYSICIANS[self.referring[study]]
        ds.StudyDescription = modality.descriptions[procedure]
        age = (int(self.study_day[study]) - int(self.birth_day[patient])) // 365
        ds.PatientAge = f"{min(99, max(0, age)):03d}Y"
        ds.SeriesInstanceUID = _uid("series", study)
        ds.Modality = modality.code
        ds.SeriesNumber = 1
        ds.SeriesDate = study_date
        ds.SeriesTime = study_time
        ds.SeriesDescription = modality.descriptions[procedure]
        ds.BodyPartExamined = modality.body_parts[procedure]
        ds.ProtocolName = modality.descriptions[procedure]
        ds.InstitutionName = _INSTITUTIONS[self.site[study]]
        ds.StationName = f"{modality.code}{int(self.site[study]) + 1:02d}"
        ds.Manufacturer = _MANUFACTURERS[(int(self.site[study]) + procedure) % len(_MANUFACTURERS)]
        ds.SOPClassUID = modality.sop_class
        ds.SOPInstanceUID = self.instance_uid(study, 0)
        ds.InstanceNumber = 1
        ds.ContentDate = study_date
        ds.ContentTime = study_time
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.Rows = ds.Columns = modality.size
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        return ds

    @staticmethod
    def instance_uid(study: int, number: int) -> str:
        return _uid("instance", study, number)

    def study_rows(self, study: int) -> list[Any]:
        """The index rows of the study's instances, split by level as ingest splits them."""
        ds = self.study_dataset(study)
        rows = _level_rows(ds, None)  # no issuer heuristic
        study_uid = ds.StudyInstanceUID
        size = int(ds.Rows) * int(ds.Columns) * 2 + 2048
        station = ds.StationName
        instances = []
        for number in range(INSTANCES_PER_STUDY):
            uid = self.instance_uid(study, number)
            row = dict(rows.instance)
            row.update(
                sop_instance_uid=uid,
                instance_number=number + 1,
                transfer_syntax_uid=ExplicitVRLittleEndian,
                file_path=f"{study_uid}/{uid}.dcm",  # never read: no file is written
                file_size=size,
                checksum=hashlib.sha256(uid.encode()).hexdigest(),
                source_ae=station,
            )
            instances.append(dataclasses.replace(rows, instance=row))
        return instances

    def study_datasets(self, study: int) -> list[Dataset]:
        """The study's instances as small files (32x32 pixels) for C-STORE."""
        template = self.study_dataset(study)
        template.Rows = template.Columns = 32
        template.PixelData = bytes(32 * 32 * 2)
        datasets = []
        for number in range(INSTANCES_PER_STUDY):
            ds = copy.deepcopy(template)
            ds.SOPInstanceUID = self.instance_uid(study, number)
            ds.InstanceNumber = number + 1
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            datasets.append(ds)
        return datasets

    def queries(self, kind: str, count: int, seed: int) -> list[dict[str, str]]:
        """``count`` matching keys of one kind, of entities that exist, drawn at random."""
        rng = np.random.default_rng([seed, QUERY_KINDS.index(kind)])
        studies = rng.integers(self.studies, size=count)
        patients = self.study_patient[studies]
        if kind == "PatientName":
            return [{kind: f"{SURNAMES[self.surname[p]]}*"} for p in patients]
        if kind == "StudyDate":
            lengths = rng.integers(1, 4, size=count)
            return [
                {kind: f"{_day(self.study_day[s])}-{_day(self.study_day[s] + n - 1)}"}
                for s, n in zip(studies, lengths, strict=True)
            ]
        if kind == "AccessionNumber":
            return [{kind: self.accession(int(s))} for s in studies]
        return [{kind: self.patient_id(int(p))} for p in patients]


QUERY_KINDS = ("PatientName", "StudyDate", "AccessionNumber", "PatientID")
QUERY_LABELS = {
    "Echo": "C-ECHO (floor)",
    "PatientName": "PatientName SURNAME*",
    "StudyDate": "StudyDate range 1-3 d",
    "AccessionNumber": "AccessionNumber",
    "PatientID": "PatientID",
}
RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
    "StudyInstanceUID",
)


# --- building and caching the index ------------------------------------------------


def schema_fingerprint() -> tuple[str, str]:
    """(Alembic head, digest of the migrations, tables and indexes as pacsnode has them)."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or "none"
    digest = hashlib.sha256(f"data {DATA_VERSION}\n".encode())
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        for table in metadata.sorted_tables:
            digest.update(str(CreateTable(table).compile(dialect=dialect)).encode())
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                digest.update(str(CreateIndex(index).compile(dialect=dialect)).encode())
    return head, digest.hexdigest()[:10]


@dataclasses.dataclass(frozen=True)
class BuiltIndex:
    backend: str
    url: str
    """The SQLAlchemy URL pacsnode serves from (empty for SQLite in data_dir)."""
    data_dir: Path
    fill_seconds: float
    reused: bool


def _progress(label: str, done: int, total: int, started: float) -> None:
    """One progress line; studies a resumed fill skips count as done at once."""
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("inf")
    print(
        f"  {label}: {done:,}/{total:,} instances ({100 * done / total:.1f}%), "
        f"{rate:,.0f} inst/s, {elapsed / 60:.1f} min so far, ETA {eta / 60:.1f} min",
        flush=True,
    )


def _fill_worker(
    url: str, instances: int, worker: int, workers: int, progress: Any, sqlite_file: bool
) -> None:
    """Index this worker's share of the studies (those of every ``workers``-th patient)."""
    from common import _die_with_parent

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    population = Population(instances)
    database = open_database(url)
    if sqlite_file:

        @sa.event.listens_for(database.writer, "connect")
        def fast(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")  # after pacsnode's FULL: a fill, not data
            cursor.execute("PRAGMA cache_size=-262144")
            cursor.close()

    index = Index(database)
    with database.reader.connect() as connection:
        complete = set(
            connection.execute(
                sa.select(study_table.c.study_instance_uid).where(
                    study_table.c.num_instances >= INSTANCES_PER_STUDY
                )
            ).scalars()
        )
    for number in range(population.studies):
        if int(population.study_patient[number]) % workers != worker:
            continue
        if population.study_uid(number) not in complete:
            for rows in population.study_rows(number):
                index.add(rows, CHARSET, "keep")
        with progress.get_lock():
            progress.value += INSTANCES_PER_STUDY
    database.dispose()


def _fill(label: str, url: str, population: Population, workers: int, sqlite_file: bool) -> float:
    """Run the fill workers with progress every 30 s; seconds it took."""
    context = multiprocessing.get_context("spawn")
    progress = context.Value("q", 0)
    processes = [
        context.Process(
            target=_fill_worker,
            args=(url, population.instances, worker, workers, progress, sqlite_file),
            name=f"fill-{label}-{worker}",
        )
        for worker in range(workers)
    ]
    started = time.monotonic()
    for process in processes:
        process.start()
    try:
        last_report = started
        while any(p.is_alive() for p in processes):
            time.sleep(1)
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                _progress(label, progress.value, population.instances, started)
        failed = [p.name for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"fill failed in {', '.join(failed)}")
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(10)
    return time.monotonic() - started


def _expected_count(url: str) -> int:
    database = open_database(url)
    try:
        return Index(database).stats().instances
    finally:
        database.dispose()


def _migrate(url: str) -> None:
    database = open_database(url)
    try:
        migrate(database.writer)
    finally:
        database.dispose()


def sqlite_index(population: Population, key: str, rebuild: bool) -> BuiltIndex:
    final = CACHE / f"sqlite-{key}"
    marker = final / "fill.json"
    url = f"sqlite:///{final / 'index.sqlite'}"
    if rebuild:
        shutil.rmtree(final, ignore_errors=True)
    if marker.exists() and _expected_count(url) == population.instances:
        fill = json.loads(marker.read_text())["fill_seconds"]
        print(f"sqlite: reusing {final} (filled in {fill / 60:.1f} min)", flush=True)
        return BuiltIndex("sqlite", "", final, fill, True)
    partial = CACHE / f"sqlite-{key}.partial"
    partial_url = f"sqlite:///{partial / 'index.sqlite'}"
    print(f"sqlite: filling {partial} with {population.instances:,} instances", flush=True)
    partial.mkdir(parents=True, exist_ok=True)
    previous = partial / "fill-time.txt"
    spent = float(previous.read_text()) if previous.exists() else 0.0
    _migrate(partial_url)
    try:
        spent += _fill("sqlite", partial_url, population, 1, True)
    finally:
        previous.write_text(str(spent))  # an interrupted fill resumes, and counts its time
    engine = sa.create_engine(partial_url)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    count = _expected_count(partial_url)
    if count != population.instances:
        raise RuntimeError(f"sqlite fill holds {count} instances, not {population.instances}")
    (partial / "fill.json").write_text(json.dumps({"fill_seconds": spent, "instances": count}))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    print(f"sqlite: filled in {spent / 60:.1f} min", flush=True)
    return BuiltIndex("sqlite", "", final, spent, False)


def _admin(admin_url: str) -> sa.Engine:
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")


def _database_url(admin_url: str, name: str) -> str:
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one server's run; yields its URL and drops
    it afterwards."""
    admin = _admin(admin_url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(admin_url, name)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _database_exists(admin: sa.Engine, name: str) -> bool:
    with admin.connect() as connection:
        found = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        return found.first() is not None


def postgres_index(
    population: Population, key: str, admin_url: str, rebuild: bool, workers: int
) -> BuiltIndex:
    name = f"pacsnode_bench_{key}"[:63]
    url = _database_url(admin_url, name)
    marker = CACHE / f"postgresql-{key}.json"
    admin = _admin(admin_url)
    data_dir = workdir("pacsnode-bench-query") / "postgres-data"
    try:
        if rebuild and _database_exists(admin, name):
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            marker.unlink(missing_ok=True)
        exists = _database_exists(admin, name)
        if exists and marker.exists() and _expected_count(url) == population.instances:
            fill = json.loads(marker.read_text())["fill_seconds"]
            print(f"postgresql: reusing database {name} (filled in {fill / 60:.1f} min)")
            return BuiltIndex("postgresql", url, data_dir, fill, True)
        marker.unlink(missing_ok=True)
        if not exists:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        print(
            f"postgresql: filling database {name} with {population.instances:,} instances "
            f"({workers} processes)",
            flush=True,
        )
        _migrate(url)
        progress_file = CACHE / f"postgresql-{key}.partial"
        spent = float(progress_file.read_text()) if progress_file.exists() else 0.0
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        try:
            spent += _fill("postgresql", url, population, workers, False)
        finally:
            progress_file.write_text(str(spent))
            with admin.connect() as connection:
                connection.exec_driver_sql(f'ALTER DATABASE "{name}" RESET synchronous_commit')
        vacuum = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with vacuum.connect() as connection:
            connection.exec_driver_sql("VACUUM (ANALYZE)")
        vacuum.dispose()
        count = _expected_count(url)
        if count != population.instances:
            raise RuntimeError(f"postgresql fill holds {count} instances")
        marker.write_text(json.dumps({"fill_seconds": spent, "instances": count, "database": name}))
        progress_file.unlink(missing_ok=True)
        print(f"postgresql: filled in {spent / 60:.1f} min", flush=True)
        return BuiltIndex("postgresql", url, data_dir, spent, False)
    finally:
        admin.dispose()


def drop_stale(schema: str, admin_url: str | None) -> None:
    """Delete the cached indexes of other schemas (any size) than ``schema``."""
    for path in CACHE.glob("*"):
        if schema not in path.name:
            print(f"dropping stale cache {path}")
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    if not admin_url:
        return
    admin = _admin(admin_url)
    try:
        with admin.connect() as connection:
            names = connection.execute(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'pacsnode_bench_%'")
            ).scalars()
            for name in list(names):
                if not name.startswith("pacsnode_bench_small") and schema not in name:
                    print(f"dropping stale database {name}")
                    connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# --- DIMSE clients ------------------------------------------------------------------


@contextmanager
def association(
    port: int, called_ae: str, contexts: list[str], timeout: float = 60
) -> Iterator[Association]:
    """An association from pacsnode's own requestor."""
    peer = Peer(
        "127.0.0.1",
        port,
        called_ae,
        CALLING_AE,
        acse_timeout=timeout,
        network_timeout=timeout,
        dimse_timeout=timeout,
    )
    proposals = [Proposal(c, (ExplicitVRLittleEndian, IMPLICIT_VR_LE)) for c in contexts]
    assoc = connect(peer, proposals)
    try:
        yield assoc
    finally:
        assoc.release()


def find_identifier(keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in RETURN_KEYS:
        setattr(ds, keyword, keys.get(keyword, ""))
    return ds


def timed_find(assoc: Association, keys: dict[str, str]) -> tuple[float, int]:
    """Seconds from the C-FIND request to its final response, and the matches."""
    context = assoc.context_for(STUDY_ROOT_FIND)
    assert context is not None
    data = encode(find_identifier(keys), context.transfer_syntax)
    command = {"CommandField": C_FIND_RQ, "AffectedSOPClassUID": STUDY_ROOT_FIND, "Priority": 0}
    matches = 0
    started = time.perf_counter()
    for response in request(assoc, context.id, command, data):
        code = int(response.command["Status"])
        if code in (0xFF00, 0xFF01):
            matches += 1
        elif code == 0x0000:
            return time.perf_counter() - started, matches
        else:
            raise RuntimeError(f"C-FIND {keys} ended with status {code:04X}")
    raise RuntimeError(f"C-FIND {keys}: association lost")


@dataclasses.dataclass
class Latency:
    median_ms: float
    p95_ms: float
    matches_min: int
    matches_median: float
    matches_max: int
    queries: int

    @staticmethod
    def of(results: list[tuple[float, int]]) -> Latency:
        times = [seconds * 1000 for seconds, _ in results]
        matches = [found for _, found in results]
        return Latency(
            round(statistics.median(times), 2),
            round(percentile(times, 95), 2),
            min(matches),
            statistics.median(matches),
            max(matches),
            len(results),
        )


def timed_echo(assoc: Association) -> tuple[float, int]:
    context = assoc.context_for(VERIFICATION)
    assert context is not None
    command = {"CommandField": C_ECHO_RQ, "AffectedSOPClassUID": VERIFICATION}
    started = time.perf_counter()
    status = int(final(request(assoc, context.id, command)).command["Status"])
    if status != 0:
        raise RuntimeError(f"C-ECHO failed: {status:04X}")
    return time.perf_counter() - started, 0


def measure_finds(
    port: int, called_ae: str, population: Population, queries: int
) -> dict[str, Latency]:
    """Per query kind: ``queries`` C-FINDs on one open association, after a warm-up.

    And as many C-ECHOs: the round trip that any request costs through this client and
    the server's DIMSE layer, the floor under every C-FIND figure.
    """
    results: dict[str, Latency] = {}
    with association(port, called_ae, [STUDY_ROOT_FIND, VERIFICATION]) as assoc:
        for _ in range(5):
            timed_echo(assoc)
        results["Echo"] = Latency.of([timed_echo(assoc) for _ in range(queries)])
        for kind in QUERY_KINDS:
            for keys in population.queries(kind, 5, seed=2):  # warm-up, not counted
                timed_find(assoc, keys)
            timed = [timed_find(assoc, keys) for keys in population.queries(kind, queries, seed=1)]
            results[kind] = Latency.of(timed)
    return results


@dataclasses.dataclass
class Move:
    seconds: float
    status: int | None
    """The final status; ``None`` when the association was lost."""
    completed: int
    failed: int


def timed_move(port: int, called_ae: str, study_uid: str, destination: str, timeout: float) -> Move:
    """C-MOVE one study; seconds from the request to the final response."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    with association(port, called_ae, [STUDY_ROOT_MOVE], timeout) as assoc:
        started = time.perf_counter()
        try:
            result = move_on(assoc, STUDY_ROOT_MOVE, identifier, destination)
        except ConnectionError:
            return Move(time.perf_counter() - started, None, 0, 0)
        return Move(time.perf_counter() - started, result.status, result.completed, result.failed)


# --- EXPLAIN -----------------------------------------------------------------------


def explain(backend: str, url: str, population: Population) -> dict[str, str]:
    """The plan of each kind of query as pacsnode builds it (one sample value each)."""
    database = open_database(url)
    plans = {}
    try:
        for kind in QUERY_KINDS:
            keys = dict.fromkeys(RETURN_KEYS, "")
            keys.update(population.queries(kind, 1, seed=3)[0])
            statement = build(Query(level=Level.STUDY, keys=keys, patient_root=False))
            engine = database.reader
            sql = str(
                statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
            )
            prefix = "EXPLAIN QUERY PLAN " if backend == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
            if backend == "postgresql":
                sql = sql.replace("%%", "%")  # run without parameters: no pyformat escaping
            with engine.connect() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cursor.execute(prefix + sql)
                lines = [" | ".join(str(v) for v in row) for row in cursor.fetchall()]
                cursor.close()
            where = sql[sql.find("WHERE") :]
            plans[kind] = f"{where}\n" + "\n".join(lines)
    finally:
        database.dispose()
    return plans


# --- the runs ----------------------------------------------------------------------


def _print_latencies(title: str, rows: dict[str, dict[str, Latency]]) -> None:
    print(f"\n{title}")
    print(f"{'server':24s} {'query':24s} {'median ms':>10s} {'p95 ms':>8s}  matches min/median/max")
    for server, latencies in rows.items():
        for kind, latency in latencies.items():
            print(
                f"{server:24s} {QUERY_LABELS[kind]:24s} {latency.median_ms:10.2f} "
                f"{latency.p95_ms:8.2f}  {latency.matches_min}/{latency.matches_median:g}/"
                f"{latency.matches_max}"
            )


def run_index(args: argparse.Namespace, admin_url: str | None) -> dict[str, Any]:
    population = Population(args.instances)
    head, digest = schema_fingerprint()
    key = f"{population.instances}_{head}_{digest}".lower().replace("-", "_")
    print(
        f"index: {population.instances:,} instances, {population.studies:,} studies, "
        f"{population.patients:,} patients, {len(SURNAMES)} surnames; schema {head} "
        f"({digest}); cache {CACHE}",
        flush=True,
    )
    if args.drop_stale:
        drop_stale(key.split("_", 1)[1], admin_url)
    base = workdir("pacsnode-bench-query")
    figures: dict[str, Any] = {
        "instances": population.instances,
        "studies": population.studies,
        "patients": population.patients,
        "schema": {"alembic_head": head, "digest": digest},
        "backends": {},
    }
    latencies: dict[str, dict[str, Latency]] = {}
    for backend in args.backends:
        if backend == "postgresql" and not admin_url:
            print("postgresql: skipped, set PACSNODE_BENCH_POSTGRES_URL or --postgres-url")
            continue
        if backend == "sqlite":
            built = sqlite_index(population, key, args.rebuild)
        else:
            assert admin_url
            built = postgres_index(population, key, admin_url, args.rebuild, args.fill_workers)
        server: dict[str, object] = {"data_dir": str(built.data_dir)}
        if built.url:
            server["database_url"] = built.url
        with pacsnode_serve(base, f"pacsnode-index-{backend}", server) as port:
            print(f"{backend}: C-FIND x {args.queries} per kind on port {port}", flush=True)
            latencies[f"pacsnode {backend}"] = measure_finds(
                port, "PACSNODE", population, args.queries
            )
        figures["backends"][backend] = {
            "fill_seconds": round(built.fill_seconds, 1),
            "fill_reused": built.reused,
            "find": {k: dataclasses.asdict(v) for k, v in latencies[f"pacsnode {backend}"].items()},
        }
        if args.explain:
            url = built.url or f"sqlite:///{built.data_dir / 'index.sqlite'}"
            plans = explain(backend, url, population)
            figures["backends"][backend]["explain"] = plans
            for kind, plan in plans.items():
                print(f"\n{backend} EXPLAIN {QUERY_LABELS[kind]}:\n{plan}")
    _print_latencies(
        f"C-FIND, Study Root, STUDY level, {population.instances:,} instances "
        f"({population.studies:,} studies, {population.patients:,} patients), "
        f"open association, {args.queries} queries each (goal: PatientName median < 20 ms)",
        latencies,
    )
    return figures


Server = Callable[[], AbstractContextManager[int]]


def _write_small_corpus(directory: Path, population: Population) -> list[Path]:
    stamp = directory / f"version-{DATA_VERSION}-{population.instances}"
    files = sorted(directory.glob("*.dcm"))
    if stamp.exists() and len(files) == population.instances:
        return files
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for study in range(population.studies):
        for ds in population.study_datasets(study):
            ds.save_as(
                directory / f"s{study:04d}-{ds.InstanceNumber:02d}.dcm", enforce_file_format=True
            )
    stamp.touch()
    return sorted(directory.glob("*.dcm"))


def run_small(args: argparse.Namespace, admin_url: str | None) -> dict[str, Any]:
    from pydicom import dcmread

    base = workdir("pacsnode-bench-query")
    population = Population(args.small_studies * INSTANCES_PER_STUDY)
    small = _write_small_corpus(base / "small-corpus", population)
    ct = ct_corpus(base / "ct-corpus", args.move_count)
    ct_study = str(dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    ct_megabytes = sum(f.stat().st_size for f in ct) / 1e6
    print(
        f"\nsmall archive: {population.studies} studies ({len(small)} instances) and one "
        f"study of {len(ct)} CT instances ({ct_megabytes:.0f} MB)",
        flush=True,
    )
    figures: dict[str, Any] = {
        "studies": population.studies,
        "instances": len(small),
        "move_instances": len(ct),
        "move_megabytes": round(ct_megabytes, 1),
        "servers": {},
    }
    finds: dict[str, dict[str, Latency]] = {}
    moves: dict[tuple[str, str], list[Move]] = {}
    gets: dict[str, list[float]] = {}
    with (
        discard_scp(base, "DISCARD") as (discard_port, discard_log),
        raw_discard_scp(base) as (raw_port, raw_log),
        storescp_discard(base) as (storescp_port, _storescp_log),
    ):
        destinations = {"STORESCP": storescp_port, "DISCARD": discard_port, "RAWSINK": raw_port}
        logs = {"DISCARD": discard_log, "RAWSINK": raw_log}
        figures["receiver_ceiling_inst_per_s"] = {}
        for destination, port in destinations.items():
            # What each receiver takes from DCMTK in Orthanc's PDU size (16 KiB).
            seconds = storescu(port, destination, ct, max_pdu=16384)
            ceiling = len(ct) / seconds
            print(f"{destination} alone (storescu, 16 KiB PDUs): {ceiling:.0f} inst/s", flush=True)
            figures["receiver_ceiling_inst_per_s"][destination] = round(ceiling, 1)
        remotes = [
            {"ae_title": ae, "host": "127.0.0.1", "port": port} for ae, port in destinations.items()
        ]

        @contextmanager
        def pacsnode(database_url: str = "") -> Iterator[int]:
            name = "postgresql" if database_url else "sqlite"
            data = base / f"small-{name}-data"
            shutil.rmtree(data, ignore_errors=True)
            server: dict[str, object] = {"data_dir": str(data)}
            if database_url:
                server["database_url"] = database_url
            with pacsnode_serve(base, f"pacsnode-small-{name}", server, remotes) as port:
                yield port

        @contextmanager
        def pacsnode_postgres() -> Iterator[int]:
            assert admin_url
            name = f"pacsnode_bench_small_{os.getpid()}"
            with scratch_database(admin_url, name) as url, pacsnode(url) as port:
                yield port

        @contextmanager
        def orthanc_postgres() -> Iterator[int]:
            """Orthanc with its PostgreSQL index plugin (Debian's orthanc-postgresql):
            what pacsnode on PostgreSQL compares with like for like."""
            assert admin_url
            with scratch_database(admin_url, f"orthanc_bench_small_{os.getpid()}") as url:
                parsed = sa.make_url(url)
                index = {
                    "EnableIndex": True,
                    "EnableStorage": False,
                    "Host": parsed.host or "127.0.0.1",
                    "Port": parsed.port or 5432,
                    "Database": parsed.database,
                    "Username": parsed.username or "",
                    "Password": parsed.password or "",
                }
                with orthanc(index) as port:
                    yield port

        @contextmanager
        def orthanc(index: dict[str, object] | None = None) -> Iterator[int]:
            extra: dict[str, object] = {
                "DicomAlwaysAllowFind": True,
                "DicomAlwaysAllowMove": True,
                "DicomModalities": {
                    "benchscu": [CALLING_AE, "127.0.0.1", 104],
                    **{ae.lower(): [ae, "127.0.0.1", port] for ae, port in destinations.items()},
                },
            }
            if index is not None:
                extra.update(Plugins=[ORTHANC_POSTGRESQL_INDEX], PostgreSQL=index)
            with orthanc_server(base, True, extra) as (dicom_port, _http_port):
                yield dicom_port

        servers: dict[str, tuple[Server, str]] = {"pacsnode sqlite": (pacsnode, "PACSNODE")}
        if admin_url and "postgresql" in args.backends:
            servers["pacsnode postgresql"] = (pacsnode_postgres, "PACSNODE")
        servers["orthanc TCP_NODELAY=1"] = (orthanc, "ORTHANC")
        if admin_url and "postgresql" in args.backends:
            if Path(ORTHANC_POSTGRESQL_INDEX).exists():
                servers[ORTHANC_POSTGRESQL] = (orthanc_postgres, "ORTHANC")
            else:
                print(f"no {ORTHANC_POSTGRESQL_INDEX} (apt-get install orthanc-postgresql)")
        for name, (start, ae) in servers.items():
            with start() as port:
                stored = storescu(port, ae, small + ct)
                quiet = wait_until_quiet(b"Orthanc" if ae == "ORTHANC" else b"pacsnode\0serve")
                print(
                    f"{name}: stored {len(small) + len(ct)} instances in {stored:.1f} s, "
                    f"quiet {quiet:.0f} s later",
                    flush=True,
                )
                finds[name] = measure_finds(port, ae, population, args.queries)
                for destination in destinations:
                    runs = []
                    for _ in range(args.moves):
                        move = timed_move(port, ae, ct_study, destination, args.move_timeout)
                        runs.append(move)
                        complete = move.status == 0 and move.completed == len(ct)
                        print(
                            f"{name}: C-MOVE to {destination} "
                            + (
                                f"{len(ct) / move.seconds:.0f} inst/s"
                                if complete
                                else f"FAILED after {move.seconds:.1f} s: {move}"
                            ),
                            flush=True,
                        )
                    moves[(name, destination)] = runs
                gets[name] = [
                    getscu_discard(port, ae, ct_study, CALLING_AE) for _ in range(args.moves)
                ]
                print(f"{name}: C-GET {len(ct) / statistics.median(gets[name]):.0f} inst/s")
        for destination, log in logs.items():
            received = [
                int(line.split(": ")[1].split()[0])
                for line in log.read_text().splitlines()
                if line.startswith("association closed")
            ]
            whole = sum(
                1
                for (_, to), runs in moves.items()
                for m in runs
                if to == destination and m.status == 0 and m.completed == len(ct)
            )
            if received.count(len(ct)) != 1 + whole:  # storescu, then complete moves
                print(f"warning: {destination} received {received} instances per association")

    _print_latencies(
        f"C-FIND on an open association, small archive ({population.studies} studies), "
        f"{args.queries} queries each",
        finds,
    )
    orthanc_name = "orthanc TCP_NODELAY=1"
    print("\nC-FIND speed ratio (Orthanc median / pacsnode median; goal >= 1.0)")
    for name in finds:
        if name.startswith("orthanc"):
            continue
        references = [orthanc_name]
        if name == "pacsnode postgresql" and ORTHANC_POSTGRESQL in finds:
            references.append(ORTHANC_POSTGRESQL)
        for reference in references:
            ratios = {
                kind: finds[reference][kind].median_ms / finds[name][kind].median_ms
                for kind in QUERY_KINDS
            }
            print(
                f"{name:24s} "
                + "  ".join(f"{QUERY_LABELS[k]}: {r:4.2f}x" for k, r in ratios.items())
                + ("" if reference == orthanc_name else f"  (vs {reference})")
            )
            key = "find_ratio_vs_orthanc" + ("" if reference == orthanc_name else "_postgresql")
            figures["servers"].setdefault(name, {})[key] = {
                k: round(r, 2) for k, r in ratios.items()
            }
    print(
        f"\nC-MOVE of one study, {len(ct)} CT instances ({ct_megabytes:.0f} MB), "
        f"median of {args.moves} (goal: >= 1.0x Orthanc)"
    )
    print(
        "STORESCP: DCMTK storescp --ignore; DISCARD: pynetdicom Storage SCP; "
        "RAWSINK: a discard SCP on bare sockets, for reference"
    )
    header = ("server", "destination", "seconds", "inst/s", "MB/s", "vs Orthanc", "failed runs")
    print("{:24s} {:12s} {:>8s} {:>8s} {:>8s} {:>10s}  {}".format(*header))

    def good(runs: list[Move]) -> list[float]:
        return [m.seconds for m in runs if m.status == 0 and m.completed == len(ct)]

    for (name, destination), runs in moves.items():
        ok = good(runs)
        reference_runs = good(moves[(orthanc_name, destination)])
        seconds = statistics.median(ok) if ok else float("nan")
        ratio = (
            statistics.median(reference_runs) / seconds if ok and reference_runs else float("nan")
        )
        print(
            f"{name:24s} {destination:12s} {seconds:8.2f} {len(ct) / seconds:8.0f} "
            f"{ct_megabytes / seconds:8.1f} {ratio:9.2f}x  {len(runs) - len(ok)} of {len(runs)}"
        )
        figures["servers"].setdefault(name, {}).setdefault("move", {})[destination] = {
            "runs": [dataclasses.asdict(m) for m in runs],
            "median_seconds": round(seconds, 3) if ok else None,
            "inst_per_s": round(len(ct) / seconds, 1) if ok else None,
            "mb_per_s": round(ct_megabytes / seconds, 1) if ok else None,
            "ratio_vs_orthanc": round(ratio, 2) if ok and reference_runs else None,
            "failed_runs": len(runs) - len(ok),
        }
    print(f"\nC-GET of the study by getscu --ignore, median of {args.moves} (goal: >= 1.0x)")
    for name, get_seconds in gets.items():
        seconds = statistics.median(get_seconds)
        ratio = statistics.median(gets[orthanc_name]) / seconds
        print(f"{name:24s} {seconds:8.2f} s {len(ct) / seconds:8.0f} inst/s {ratio:6.2f}x")
        figures["servers"].setdefault(name, {})["get"] = {
            "median_seconds": round(seconds, 3),
            "inst_per_s": round(len(ct) / seconds, 1),
            "ratio_vs_orthanc": round(ratio, 2),
        }
    for name, latencies in finds.items():
        figures["servers"].setdefault(name, {})["find"] = {
            k: dataclasses.asdict(v) for k, v in latencies.items()
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000, help="size of the large index")
    parser.add_argument("--queries", type=int, default=50, help="C-FINDs per kind of query")
    parser.add_argument(
        "--backends",
        type=lambda text: [b.strip() for b in text.split(",") if b.strip()],
        default=["sqlite", "postgresql"],
        help="comma-separated: sqlite, postgresql",
    )
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--fill-workers", type=int, default=2, help="processes filling PostgreSQL")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached index")
    parser.add_argument(
        "--drop-stale",
        action="store_true",
        help="delete cached indexes (files and pacsnode_bench_* databases) of other schemas",
    )
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--skip-index", action="store_true", help="no large-index section")
    parser.add_argument("--skip-small", action="store_true", help="no comparison with Orthanc")
    parser.add_argument("--small-studies", type=int, default=100)
    parser.add_argument("--move-count", type=int, default=1000, help="instances in the moved study")
    parser.add_argument("--moves", type=int, default=3, help="C-MOVE repetitions")
    parser.add_argument(
        "--move-timeout", type=float, default=90, help="seconds without a C-MOVE response"
    )
    args = parser.parse_args()
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    admin_url = (
        args.postgres_url
        or os.environ.get("PACSNODE_BENCH_POSTGRES_URL")
        or os.environ.get("PACSNODE_TEST_POSTGRES_URL")
    )
    # SIGTERM unwinds like Ctrl-C: the servers and fill processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures: dict[str, Any] = {"queries_per_kind": args.queries}
    started = time.monotonic()
    if not args.skip_index:
        figures["index"] = run_index(args, admin_url)
        write_results("query", figures)
    if not args.skip_small:
        figures["small"] = run_small(args, admin_url)
    figures["run_seconds"] = round(time.monotonic() - started, 1)
    path = write_results("query", figures)
    print(f"\nfigures written to {path}")


if __name__ == "__main__":
    main()
