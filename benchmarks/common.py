"""Shared pieces of the benchmarks: corpora, servers on loopback, timing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def ct_corpus(directory: Path, count: int, studies: int = 1) -> list[Path]:
    """``count`` CT instances of 512x512 16-bit, spread over ``studies`` studies."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob("*.dcm"))
    if len(existing) == count:
        return existing
    for old in existing:
        old.unlink()
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4000, (512, 512), dtype=np.uint16).tobytes()
    study_uids = [generate_uid() for _ in range(studies)]
    series_uids = [generate_uid() for _ in range(studies)]
    paths = []
    for number in range(count):
        which = number % studies
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName = f"BENCH^PATIENT{which}"
        ds.PatientID = f"BENCH{which:05d}"
        ds.StudyInstanceUID = study_uids[which]
        ds.SeriesInstanceUID = series_uids[which]
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = f"ACC{which:06d}"
        ds.Modality = "CT"
        ds.InstanceNumber = number + 1
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"ct{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@contextmanager
def pacsnode_server(workdir: Path, ae_title: str = "PACSNODE") -> Iterator[int]:
    """A pacsnode on its embedded defaults in a fresh data directory."""
    port = free_port()
    data = workdir / "pacsnode-data"
    shutil.rmtree(data, ignore_errors=True)
    log = (workdir / "pacsnode.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pacsnode",
            "serve",
            "--data-dir",
            str(data),
            "--dicom-port",
            str(port),
            "--ae-title",
            ae_title,
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@contextmanager
def orthanc_server(
    workdir: Path,
    tcp_nodelay: bool,
    extra: dict[str, object] | None = None,
    ae_title: str = "ORTHANC",
) -> Iterator[tuple[int, int]]:
    """Orthanc from the Debian package with a throw-away config; yields (dicom, http)."""
    if shutil.which("Orthanc") is None:
        raise RuntimeError("Orthanc is not installed (apt-get install orthanc)")
    dicom_port, http_port = free_port(), free_port()
    storage = workdir / "orthanc-db"
    shutil.rmtree(storage, ignore_errors=True)
    config = {
        "Name": "benchmark",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "StorageCompression": False,
        "Plugins": [],
        "DicomModalities": {},
        "DicomAlwaysAllowStore": True,
    }
    config.update(extra or {})
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config))
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if tcp_nodelay:
        env["TCP_NODELAY"] = "1"
    log = (workdir / "orthanc.log").open("w")
    process = subprocess.Popen(
        ["Orthanc", str(config_path)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        wait_for_port(dicom_port)
        wait_for_port(http_port)
        yield dicom_port, http_port
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def workdir(name: str) -> Path:
    base = Path(os.environ.get("PACSNODE_BENCH_DIR", tempfile.gettempdir())) / name
    base.mkdir(parents=True, exist_ok=True)
    return base
