"""DICOMweb: study metadata, QIDO-RS and WADO-RS, pacsnode next to Orthanc.

    python benchmarks/dicomweb.py [--quick] [--metadata-instances 1000] [--studies 10000]
                                  [--wado-instances 1000] [--servers pacsnode,orthanc]

The same three sets of files go into both servers:

- a CT study of ``--metadata-instances`` instances (default 1,000, in 4 series), each a
  copy of pydicom's ``CT_small.dcm`` (a GE HiSpeed CT/i header: ~250 attributes with
  private groups and sequences, 128x128 16-bit pixels) with its own UIDs, instance
  number and slice position;
- ``--studies`` studies (default 10,000) of one small instance each (the same header
  with 16x16 pixels), from 3,300 patients with a few dozen surnames, over ten years;
- a study of ``--wado-instances`` CT instances of 512x512 16-bit (default 1,000: 525 MB),
  as ``bench-ingest`` sends.

The files are generated once into ``benchmarks/.cache/dicomweb``. pacsnode gets them with
``pacsnode import`` (no network), Orthanc with DCMTK ``storescu`` over 4 associations;
both timings are printed. Orthanc runs with its DICOMweb plugin on the plugin's own
defaults (``StudiesMetadata``/``SeriesMetadata`` "Full": metadata read from the files),
``--orthanc-metadata`` picks another mode. pacsnode runs on its defaults (SQLite).

One server runs at a time, on loopback. The client is the standard library's
``http.client`` on one kept-alive connection (httpx costs three times its CPU on large
bodies, and the client shares the cores with the server), the same code for both, with
``Accept-Encoding: identity`` (Orthanc compresses when asked; ``--gzip`` asks).
Each body is read whole.

1. Study metadata (``GET /dicom-web/studies/{study}/metadata``, application/dicom+json):
   the first request ever (the first the server answers after loading: pacsnode keeps
   a JSON document per instance, see ``archive/metadata.py``, made in the background
   after a C-STORE or STOW-RS, but ``pacsnode import`` runs without the server, so
   here they are made by this request), the first request after a restart (median over
   ``--cold-starts`` - 1 restarts; the OS file cache stays warm), and warm: the median
   of ``--repeat`` further requests.
2. QIDO-RS ``GET /dicom-web/studies`` over all studies: every study (no limit, median
   of ``--all-repeat``), a viewer's study list (``PatientName=A*``, OHIF's includefield,
   limit 101), a date range and a PatientID (median of ``--repeat``); each after one
   warm-up request. The number of studies each server returned is printed next to it.
3. WADO-RS ``GET /dicom-web/studies/{study}`` with ``multipart/related;
   type="application/dicom"; transfer-syntax=*``: MB/s of the whole body, median of
   ``--wado-repeat`` after one warm-up (which also checks the number of parts). A server
   refusing ``transfer-syntax=*`` is asked for the stored syntax (Explicit VR Little
   Endian) instead, and the table says so.

Speed-ups are pacsnode over Orthanc (Orthanc's time / pacsnode's; pacsnode's MB/s /
Orthanc's); above 1 pacsnode is faster. Figures go to ``benchmarks/results/dicomweb.json``.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from random import Random
from urllib.parse import urlsplit

from common import (
    BENCHMARKS,
    ct_corpus,
    free_port,
    orthanc_server,
    pacsnode_serve,
    storescu,
    wait_for_port,
    workdir,
    write_results,
)
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import pacsnode

CACHE = BENCHMARKS / ".cache" / "dicomweb"
DATA_VERSION = 1
"""Bump when the generated files change: the cached ones are then written again."""

DICOM_JSON = "application/dicom+json"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
WADO_ACCEPTS = (
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_VR_LE}',
)
LOADED_WITH = {"pacsnode": "pacsnode import", "Orthanc": "storescu, 4 associations"}
SERIES_PER_METADATA_STUDY = 4
PATIENTS_PER_STUDY = 0.33

# Where Debian, Ubuntu and a source build put the plugin; ORTHANC_DICOMWEB_PLUGIN wins.
PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*",
)

# --- the files -----------------------------------------------------------------------


def _uid(*parts: object) -> str:
    """A UID that is the same on every run for the same parts."""
    return generate_uid(entropy_srcs=["pacsnode-bench-dicomweb", *map(str, parts)])


def _template() -> Dataset:
    return dcmread(str(get_testdata_file("CT_small.dcm")))


def _cached(name: str, count: int, write: Callable[[Path], None]) -> list[Path]:
    """The files of ``name``, written by ``write`` unless a complete copy is cached.

    The stamp sits beside the folder: ``pacsnode import`` takes every file in it.
    """
    directory = CACHE / f"{name}-{count}"
    stamp = CACHE / f"{name}-{count}.v{DATA_VERSION}.done"
    if not stamp.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        started = time.monotonic()
        print(f"writing {count:,} files to {directory} ...", flush=True)
        write(directory)
        print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
        stamp.touch()
    return sorted(directory.glob("*.dcm"))


def _write_metadata_study(directory: Path, count: int) -> None:
    ds = _template()
    ds.StudyInstanceUID = _uid("metadata", count, "study")
    ds.PatientName = "BENCH^METADATA"
    ds.PatientID = "BENCHMETA"
    ds.AccessionNumber = "BENCHMETA01"
    ds.StudyID = "1"
    ds.StudyDescription = "CT CHEST ABDOMEN PELVIS W CONTRAST"
    ds.StudyDate = "20260101"
    per_series = -(-count // SERIES_PER_METADATA_STUDY)
    for number in range(count):
        series, position = divmod(number, per_series)
        ds.SeriesInstanceUID = _uid("metadata", count, "series", series)
        ds.FrameOfReferenceUID = _uid("metadata", count, "frame", series)
        ds.SeriesNumber = series + 1
        ds.SeriesDescription = f"AXIAL {1.25 * (series + 1):g} MM"
        ds.SOPInstanceUID = _uid("metadata", count, "instance", number)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = position + 1
        z = round(-1.25 * position, 2)
        ds.ImagePositionPatient = [-169.5, -169.5, z]
        ds.SliceLocation = z
        ds.save_as(directory / f"m{number:05d}.dcm", enforce_file_format=True)


def _words(text: str) -> list[str]:
    return text.split()


SURNAMES = _words(
    "ADAMS ALLEN ANDERSON BAKER BROWN CAMPBELL CARTER CLARK COLLINS DAVIS EDWARDS EVANS "
    "GARCIA GONZALEZ GREEN HALL HARRIS HERNANDEZ HILL JACKSON JOHNSON JONES KING LEE LEWIS "
    "LOPEZ MARTIN MARTINEZ MILLER MITCHELL MOORE NELSON PARKER PEREZ PHILLIPS RAMIREZ "
    "ROBERTS ROBINSON RODRIGUEZ SANCHEZ SCOTT SMITH TAYLOR THOMAS THOMPSON TURNER WALKER "
    "WHITE WILLIAMS WILSON WRIGHT YOUNG"
)
GIVEN_NAMES = _words("JAMES MARY JOHN PATRICIA ROBERT JENNIFER MICHAEL LINDA DAVID ELIZABETH")
STUDY_KINDS = (
    ("CT", "CT HEAD W/O CONTRAST"),
    ("CT", "CT CHEST W CONTRAST"),
    ("MR", "MRI BRAIN W/WO CONTRAST"),
    ("CR", "XR CHEST 2 VIEWS"),
    ("US", "US ABDOMEN COMPLETE"),
    ("DX", "XR KNEE 3 VIEWS"),
)
FIRST_STUDY_DATE = date(2016, 1, 1)


def _write_studies(directory: Path, count: int) -> None:
    ds = _template()
    ds.Rows = ds.Columns = 16
    ds.PixelData = bytes(16 * 16 * 2)
    random = Random(11)
    patients = max(1, int(count * PATIENTS_PER_STUDY))
    for number in range(count):
        patient = random.randrange(patients)
        names = Random(patient)
        modality, description = random.choice(STUDY_KINDS)
        ds.PatientName = f"{names.choice(SURNAMES)}^{names.choice(GIVEN_NAMES)}"
        ds.PatientID = f"BENCH{patient:06d}"
        ds.PatientBirthDate = f"{1930 + names.randrange(80)}0{1 + names.randrange(9)}15"
        ds.PatientSex = names.choice("FM")
        ds.StudyInstanceUID = _uid("studies", number, "study")
        ds.SeriesInstanceUID = _uid("studies", number, "series")
        ds.SOPInstanceUID = _uid("studies", number, "instance")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = (FIRST_STUDY_DATE + timedelta(days=random.randrange(3650))).strftime(
            "%Y%m%d"
        )
        ds.StudyTime = f"{random.randrange(7, 20):02d}{random.randrange(60):02d}00"
        ds.AccessionNumber = f"ACC{number:07d}"
        ds.StudyID = str(number % 10000)
        ds.Modality = modality
        ds.StudyDescription = description
        ds.ReferringPhysicianName = f"{random.choice(SURNAMES)}^{random.choice(GIVEN_NAMES)}"
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.save_as(directory / f"s{number:06d}.dcm", enforce_file_format=True)


@dataclass(frozen=True)
class Corpus:
    metadata: list[Path]
    metadata_study: str
    studies: list[Path]
    wado: list[Path]
    wado_study: str

    @property
    def folders(self) -> list[Path]:
        return [self.metadata[0].parent, self.studies[0].parent, self.wado[0].parent]

    @property
    def files(self) -> list[Path]:
        return self.metadata + self.studies + self.wado

    @property
    def wado_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.wado)

    @property
    def study_count(self) -> int:
        return len(self.studies) + 2


def corpus(args: argparse.Namespace) -> Corpus:
    metadata = _cached(
        "metadata",
        args.metadata_instances,
        lambda d: _write_metadata_study(d, args.metadata_instances),
    )
    studies = _cached("studies", args.studies, lambda d: _write_studies(d, args.studies))
    wado = ct_corpus(CACHE / f"wado-{args.wado_instances}", args.wado_instances)
    return Corpus(
        metadata,
        str(dcmread(metadata[0], stop_before_pixels=True).StudyInstanceUID),
        studies,
        wado,
        str(dcmread(wado[0], stop_before_pixels=True).StudyInstanceUID),
    )


# --- the servers ---------------------------------------------------------------------


def dicomweb_plugin() -> str:
    configured = os.environ.get("ORTHANC_DICOMWEB_PLUGIN")
    if configured:
        return configured
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise RuntimeError(
        "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb), "
        "or set ORTHANC_DICOMWEB_PLUGIN to its .so"
    )


@dataclass
class Target:
    """A server under test: how to load it, and how to start it on what it holds."""

    name: str
    load: Callable[[], float]
    """Put the corpus in; returns seconds. Leaves the server stopped."""
    start: Callable[[], AbstractContextManager[str]]
    """Start on what is loaded; yields the DICOMweb root URL (no trailing slash)."""
    notes: list[str] = field(default_factory=list)


def orthanc_target(base: Path, files: Corpus, metadata_mode: str | None) -> Target:
    plugin = dicomweb_plugin()
    dicomweb: dict[str, object] = {"Enable": True, "Root": "/dicom-web/"}
    if metadata_mode:
        dicomweb["StudiesMetadata"] = dicomweb["SeriesMetadata"] = metadata_mode
    extra: dict[str, object] = {"Plugins": [plugin], "DicomWeb": dicomweb}

    mode = metadata_mode or "Full, the plugin's default"
    notes: list[str] = []

    def load() -> float:
        with orthanc_server(base, True, extra) as (dicom_port, http_port):
            notes.append(
                f"Orthanc {_orthanc_version(http_port, '/system')} with TCP_NODELAY=1, "
                f"DICOMweb plugin {_orthanc_version(http_port, '/plugins/dicom-web')} "
                f"(StudiesMetadata and SeriesMetadata: {mode}), otherwise on its defaults."
            )
            return storescu(dicom_port, "ORTHANC", files.files, associations=4)

    @contextmanager
    def start() -> Iterator[str]:
        with orthanc_server(base, True, extra, keep_storage=True) as (_dicom_port, http_port):
            yield f"http://127.0.0.1:{http_port}/dicom-web"

    return Target("Orthanc", load, start, notes)


def _orthanc_version(http_port: int, path: str) -> str:
    client = Client(f"http://127.0.0.1:{http_port}")
    try:
        reply = client.get(path, "application/json")
        return str(json.loads(reply.body).get("Version", "?")) if reply.status == 200 else "?"
    finally:
        client.close()


def pacsnode_target(base: Path, files: Corpus) -> Target:
    data = base / "pacsnode-data"

    def load() -> float:
        shutil.rmtree(data, ignore_errors=True)
        log = base / "pacsnode-import.log"
        command = [sys.executable, "-m", "pacsnode", "import", "--data-dir", str(data)]
        started = time.perf_counter()
        with log.open("wb") as out:
            done = subprocess.run(
                [*command, *map(str, files.folders)], stdout=out, stderr=subprocess.STDOUT
            )
        if done.returncode != 0:
            raise RuntimeError(f"pacsnode import failed, see {log}")
        return time.perf_counter() - started

    @contextmanager
    def start() -> Iterator[str]:
        http_port = free_port()
        settings = {"data_dir": str(data), "http_port": http_port}
        with pacsnode_serve(base, "pacsnode", settings):
            wait_for_port(http_port)
            yield f"http://127.0.0.1:{http_port}/dicom-web"

    return Target(
        "pacsnode", load, start, [f"pacsnode {pacsnode.__version__} on its defaults (SQLite)."]
    )


# --- the client ----------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    seconds: float
    size: int
    content_type: str = ""
    body: bytes = b""
    warning: str = ""
    parts: int = 0
    """Parts of a multipart body, when counted."""


class Client:
    """HTTP/1.1 GETs on one kept-alive connection, with the standard library.

    Lean on purpose: the client shares the machine with the server, and httpx costs
    about three times the CPU of ``http.client`` reading a large body (~0.6 against
    ~0.2 s of CPU a second at 1 GB/s). A server that closes the connection after a
    response (Orthanc does after WADO-RS) gets a new one for the next request.
    """

    def __init__(self, root: str, gzip: bool = False) -> None:
        url = urlsplit(root)
        self.host, self.port, self.path = url.hostname or "", url.port or 80, url.path
        self.headers = {"Accept-Encoding": "gzip, deflate" if gzip else "identity"}
        self._connection: http.client.HTTPConnection | None = None
        self._buffer = bytearray(1 << 20)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _response(self, path: str, accept: str) -> http.client.HTTPResponse:
        headers = {**self.headers, "Accept": accept}
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self._connection.request("GET", self.path + path, headers=headers)
                return self._connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.close()  # a kept-alive connection the server had closed
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, accept: str, keep: bool = True, count_parts: bool = False) -> Reply:
        """GET ``path`` under the root, reading the whole body; ``keep`` keeps it.

        ``count_parts`` counts the parts of a multipart body as it goes by (costs a
        little CPU: not for timed runs).
        """
        started = time.perf_counter()
        response = self._response(path, accept)
        content_type = response.getheader("content-type", "")
        delimiter = b""
        if count_parts:
            for item in content_type.split(";"):
                name, _, value = item.strip().partition("=")
                if name.lower() == "boundary":
                    delimiter = b"\r\n--" + value.strip('"').encode()
        found, tail = 0, b"\r\n"  # as if the body started on a new line
        chunks: list[bytes] = []
        size = 0
        view = memoryview(self._buffer)
        while count := response.readinto(self._buffer):
            size += count
            if keep or response.status >= 300:
                chunks.append(bytes(view[:count]))
            if delimiter:
                window = tail + view[:count]
                found += window.count(delimiter)
                tail = window[-(len(delimiter) - 1) :]
        seconds = time.perf_counter() - started
        if response.will_close:
            self.close()
        return Reply(
            response.status,
            seconds,
            size,
            content_type,
            b"".join(chunks),
            response.getheader("warning", ""),
            # CRLF--boundary before every part, and once more in the closing --boundary--.
            max(found - 1, 0),
        )


@dataclass
class Figure:
    """One measurement on one server: times in seconds (or an error)."""

    seconds: list[float] = field(default_factory=list)
    size: int = 0
    results: int | None = None
    note: str = ""
    error: str = ""
    client_cpu: float | None = None
    """The client's CPU seconds per second of the timed requests (WADO-RS)."""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def _error(reply: Reply) -> str:
    text = reply.body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
    return f"HTTP {reply.status}" + (f": {text}" if text else "")


QUERIES = {
    "all": ("", "every study, no limit"),
    "viewer": (
        "PatientName=A*&limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060",
        "PatientName=A*, includefield, limit=101",
    ),
    "dates": ("StudyDate=20200101-20200131", "StudyDate one month"),
    "patient": ("PatientID=BENCH000123", "PatientID"),
}


def _summary(figure: Figure) -> str:
    if figure.error or not figure.seconds:
        return figure.error or "no figure"
    return f"median {figure.median * 1000:,.1f} ms of {len(figure.seconds)}, {figure.size:,} bytes"


def measure_server(target: Target, files: Corpus, args: argparse.Namespace) -> dict[str, Figure]:
    """Everything on one server: the first start measures all, later ones the cold request."""
    figures: dict[str, Figure] = {"first": Figure(), "cold": Figure(), "warm": Figure()}
    figures.update({f"qido-{kind}": Figure() for kind in QUERIES})
    figures["wado"] = Figure()
    for start in range(args.cold_starts):
        with target.start() as root:
            client = Client(root, args.gzip)
            try:
                cold = figures["first" if start == 0 else "cold"]
                measure_metadata(client, files, args.repeat if start == 0 else 0, cold, figures)
                print(
                    f"{target.name}: metadata, first request after start {start + 1}: "
                    + (cold.error or f"{cold.seconds[-1] * 1000:,.0f} ms"),
                    flush=True,
                )
                if start > 0:
                    continue
                print(f"{target.name}: metadata, warm: {_summary(figures['warm'])}", flush=True)
                for kind, (query, _label) in QUERIES.items():
                    figure = figures[f"qido-{kind}"]
                    repeat = args.all_repeat if kind == "all" else args.repeat
                    measure_query(client, query, repeat, figure)
                    print(
                        f"{target.name}: QIDO {kind}: {_summary(figure)}, {figure.results} studies",
                        flush=True,
                    )
                figure = figures["wado"]
                measure_wado(client, files, args.wado_repeat, figure)
                print(
                    f"{target.name}: WADO-RS: "
                    + (figure.error or f"{figure.size / 1e6 / figure.median:,.0f} MB/s")
                    + f" {figure.note}",
                    flush=True,
                )
            finally:
                client.close()
    return figures


def measure_metadata(
    client: Client, files: Corpus, repeat: int, cold: Figure, figures: dict[str, Figure]
) -> None:
    """The first request of a fresh server into ``cold``, then ``repeat`` warm ones."""
    path = f"/studies/{files.metadata_study}/metadata"
    warm = figures["warm"]
    reply = client.get(path, DICOM_JSON)
    if reply.status != 200:
        cold.error = warm.error = _error(reply)
        return
    instances = len(json.loads(reply.body))
    if instances != len(files.metadata):
        cold.note = warm.note = f"{instances} instances for {len(files.metadata)}"
    cold.seconds.append(reply.seconds)
    cold.size = warm.size = reply.size
    cold.results = warm.results = instances
    for _ in range(repeat):
        reply = client.get(path, DICOM_JSON, keep=False)
        if reply.status != 200:
            warm.error = _error(reply)
            return
        warm.seconds.append(reply.seconds)


def measure_query(client: Client, query: str, repeat: int, figure: Figure) -> None:
    path = "/studies" + (f"?{query}" if query else "")
    reply = client.get(path, DICOM_JSON)  # a warm-up, and the check
    if reply.status not in (200, 204):
        figure.error = _error(reply)
        return
    figure.results = len(json.loads(reply.body)) if reply.body else 0
    figure.size = reply.size
    figure.note = reply.warning
    for _ in range(repeat):
        reply = client.get(path, DICOM_JSON, keep=False)
        if reply.status not in (200, 204):
            figure.error = _error(reply)
            return
        figure.seconds.append(reply.seconds)


def measure_wado(client: Client, files: Corpus, repeat: int, figure: Figure) -> None:
    """A warm-up that counts the parts, then ``repeat`` timed retrieves."""
    path = f"/studies/{files.wado_study}"
    for accept in WADO_ACCEPTS:
        reply = client.get(path, accept, keep=False, count_parts=True)
        if reply.status == 200:
            break
        figure.error = _error(reply)
    else:
        return
    figure.error = ""
    figure.results = reply.parts
    figure.size = reply.size
    syntax = accept.rpartition("transfer-syntax=")[2]
    if syntax != "*":
        figure.note = f"(transfer-syntax=* refused: asked for {syntax})"
    if reply.parts != len(files.wado):
        figure.note += f" ({reply.parts} parts for {len(files.wado)} instances)"
    cpu = 0.0
    for _ in range(repeat):
        before = time.process_time()
        reply = client.get(path, accept, keep=False)
        cpu += time.process_time() - before
        if reply.status != 200:
            figure.error = _error(reply)
            return
        figure.seconds.append(reply.seconds)
    figure.client_cpu = cpu / sum(figure.seconds)


# --- the report ----------------------------------------------------------------------


def _cell_ms(figure: Figure) -> str:
    if figure.error or not figure.seconds:
        return figure.error or "-"
    return f"{figure.median * 1000:,.1f} ms" if figure.median < 1 else f"{figure.median:,.2f} s"


def _with_count(cell: str, figure: Figure) -> str:
    return cell if figure.results is None else f"{cell} ({figure.results:,} studies)"


def report(
    figures: dict[str, dict[str, Figure]], files: Corpus, args: argparse.Namespace
) -> list[str]:
    ours, theirs = figures.get("pacsnode", {}), figures.get("Orthanc", {})
    wado_mb = files.wado_bytes / 1e6
    rows = [
        (
            "first",
            f"study metadata, {len(files.metadata):,} instances: first request ever",
            "≥ 5x",
        ),
        (
            "cold",
            "study metadata: first request after a restart "
            f"(median of {max(args.cold_starts - 1, 0)} restarts)",
            "≥ 5x",
        ),
        ("warm", f"study metadata: warm (median of {args.repeat})", "≥ 5x"),
    ]
    rows += [
        (
            f"qido-{kind}",
            f"QIDO /studies: {label} (median of "
            f"{args.all_repeat if kind == 'all' else args.repeat})",
            "≥ 1x",
        )
        for kind, (_query, label) in QUERIES.items()
    ]
    rows.append(
        (
            "wado",
            f"WADO-RS study, {len(files.wado):,} instances, {wado_mb:,.0f} MB "
            f"(median of {args.wado_repeat})",
            "≥ 1x",
        )
    )
    lines = [
        "| measurement | pacsnode | Orthanc | pacsnode speed-up | goal |",
        "|---|---|---|---|---|",
    ]
    for key, label, goal in rows:
        mine, other = ours.get(key, Figure()), theirs.get(key, Figure())
        if key == "wado":
            cells = []
            for figure in (mine, other):
                cells.append(
                    figure.error or "-"
                    if figure.error or not figure.seconds
                    else f"{figure.size / 1e6 / figure.median:,.0f} MB/s {figure.note}".strip()
                )
        else:
            cells = [_cell_ms(mine), _cell_ms(other)]
            if key.startswith("qido"):
                cells = [
                    _with_count(cell, figure)
                    for cell, figure in zip(cells, (mine, other), strict=True)
                ]
        if mine.seconds and other.seconds:
            speedup = f"**{other.median / mine.median:.2f}x**"
        else:
            speedup = "-"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {speedup} | {goal} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="200-instance metadata study, 1,000 studies, a 53 MB WADO study, fewer repetitions",
    )
    parser.add_argument("--metadata-instances", type=int, default=None, help="[1000]")
    parser.add_argument("--studies", type=int, default=None, help="QIDO studies [10000]")
    parser.add_argument("--wado-instances", type=int, default=None, help="512 KB each [1000]")
    parser.add_argument("--repeat", type=int, default=None, help="metadata and QIDO [20]")
    parser.add_argument("--all-repeat", type=int, default=None, help="QIDO of every study [3]")
    parser.add_argument("--wado-repeat", type=int, default=None, help="[5]")
    parser.add_argument(
        "--cold-starts", type=int, default=None, help="server starts: the first, then restarts [3]"
    )
    parser.add_argument(
        "--servers",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=["orthanc", "pacsnode"],
        help="comma-separated: orthanc, pacsnode",
    )
    parser.add_argument(
        "--orthanc-metadata",
        choices=("Full", "MainDicomTags", "Extrapolate"),
        default=None,
        help="Orthanc DICOMweb StudiesMetadata/SeriesMetadata [the plugin's default: Full]",
    )
    parser.add_argument("--gzip", action="store_true", help="send Accept-Encoding: gzip, deflate")
    args = parser.parse_args()
    quick = {
        "metadata_instances": (1000, 200),
        "studies": (10_000, 1000),
        "wado_instances": (1000, 100),
        "repeat": (20, 5),
        "all_repeat": (3, 2),
        "wado_repeat": (5, 2),
        "cold_starts": (3, 2),
    }
    for name, (full, small) in quick.items():
        if getattr(args, name) is None:
            setattr(args, name, small if args.quick else full)
    unknown = set(args.servers) - {"orthanc", "pacsnode"}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    files = corpus(args)
    base = workdir("pacsnode-bench-dicomweb")
    print(
        f"corpus: metadata study of {len(files.metadata):,} instances, "
        f"{len(files.studies):,} one-instance studies, WADO study of {len(files.wado):,} "
        f"instances ({files.wado_bytes / 1e6:,.0f} MB); {files.study_count:,} studies in all",
        flush=True,
    )
    targets = {
        "orthanc": lambda: orthanc_target(base, files, args.orthanc_metadata),
        "pacsnode": lambda: pacsnode_target(base, files),
    }
    figures: dict[str, dict[str, Figure]] = {}
    loads: dict[str, float] = {}
    notes: list[str] = []
    started = time.monotonic()
    for name in args.servers:
        target = targets[name]()
        seconds = target.load()
        loads[target.name] = seconds
        print(
            f"{target.name}: loaded {len(files.files):,} files in {seconds:.0f} s "
            f"({len(files.files) / seconds:.0f} files/s)",
            flush=True,
        )
        figures[target.name] = measure_server(target, files, args)
        notes += target.notes

    lines = [
        f"DICOMweb, pacsnode next to Orthanc ({os.cpu_count()} CPUs, loopback, "
        f"{date.today().isoformat()}); {files.study_count:,} studies loaded in each",
        "",
        *report(figures, files, args),
        "",
        "Loading: "
        + ", ".join(
            f"{name} {seconds:.0f} s ({LOADED_WITH[name]})" for name, seconds in loads.items()
        )
        + ".",
        "Client: Python http.client, one kept-alive connection, "
        + ("Accept-Encoding: gzip, deflate." if args.gzip else "Accept-Encoding: identity.")
        + " Metadata body: "
        + ", ".join(
            f"{name} {server['warm'].size / 1e6:.1f} MB"
            for name, server in figures.items()
            if server["warm"].size
        )
        + ". WADO-RS client CPU: "
        + ", ".join(
            f"{name} {server['wado'].client_cpu:.0%}"
            for name, server in figures.items()
            if server["wado"].client_cpu is not None
        )
        + " of a core.",
        *notes,
    ]
    print("\n" + "\n".join(lines))
    path = write_results(
        "dicomweb",
        {
            "arguments": vars(args),
            "studies": files.study_count,
            "metadata_instances": len(files.metadata),
            "wado_instances": len(files.wado),
            "wado_bytes": files.wado_bytes,
            "load_seconds": {k: round(v, 1) for k, v in loads.items()},
            "notes": notes,
            "servers": {
                name: {key: asdict(figure) for key, figure in server.items()}
                for name, server in figures.items()
            },
            "table": lines,
            "run_seconds": round(time.monotonic() - started, 1),
        },
    )
    print(f"\nfigures written to {path}")


if __name__ == "__main__":
    main()
