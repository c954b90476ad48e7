"""Test fixtures: a real ``pacsnode serve`` process on loopback, real files, real databases."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pacsnode.archive.core import Archive
from pacsnode.config import Settings

PYDICOM_FILES = Path(pydicom.__file__).parent / "data"
POSTGRES_ENV = "PACSNODE_TEST_POSTGRES_URL"


def pydicom_data_dir() -> Path:
    """pydicom-data's files, read from its package folder (never downloaded)."""
    import data_store

    return Path(data_store.__file__).parent / "data"


def corpus() -> list[Path]:
    """Every DICOM file shipped by pydicom and pydicom-data."""
    folders = [
        PYDICOM_FILES / "test_files",
        PYDICOM_FILES / "charset_files",
        pydicom_data_dir(),
    ]
    return sorted(p for folder in folders for p in folder.glob("*.dcm"))


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range. One the kernel hands out from
    that range can be taken by an outgoing connection of a test running beside this one
    before the server under test binds it ("Address already in use" at start-up); below
    the range only an explicit bind takes a port."""
    below = _ephemeral_start()
    while True:
        port = random.randrange(20_000, below)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path,
    server: dict[str, Any],
    remotes: list[dict[str, Any]],
    sections: dict[str, dict[str, Any] | list[dict[str, Any]]] | None = None,
) -> Path:
    """A config file: ``[server]``, ``[[remote_ae]]`` and other ``sections``: a dict is a
    table (``{"cluster": {...}}``), a list an array of tables (``{"authority": [...]}``)."""
    lines = ["[server]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in server.items()]
    for name, section in {"remote_ae": remotes, **(sections or {})}.items():
        for entry in section if isinstance(section, list) else [section]:
            lines.append(f"\n[[{name}]]" if isinstance(section, list) else f"\n[{name}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class RunningServer:
    """A ``pacsnode serve`` child process and what a test needs to talk to it."""

    config_path: Path
    data_dir: Path
    port: int
    ae_title: str
    log_path: Path
    database_url: str
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    def start(self, timeout: float = 20.0) -> RunningServer:
        already = len(self.log())  # a restart appends to the same log
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pacsnode",
                "serve",
                "--config",
                str(self.config_path),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pacsnode exited early:\n{self.log()}")
            if "pacsnode ready" in self.log()[already:]:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"pacsnode did not start:\n{self.log()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        """Return once ``text`` is in the log; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s"
            time.sleep(0.1)

    @property
    def url(self) -> str:
        """Where the HTTP door answers."""
        return f"http://127.0.0.1:{self.http_port}"

    def archive(self) -> Archive:
        """The archive as the server sees it, opened from the test (same files, same DB)."""
        return Archive(Settings(data_dir=self.data_dir, database_url=self.database_url))


ServerFactory = Callable[..., RunningServer]


def make_server(
    base: Path,
    name: str,
    *,
    remotes: list[dict[str, Any]] | None = None,
    start: bool = True,
    data_dir: Path | None = None,
    sections: dict[str, dict[str, Any] | list[dict[str, Any]]] | None = None,
    **server: Any,
) -> RunningServer:
    """A ``pacsnode serve`` with its config, data and log in ``base``, named ``name``
    there; the caller kills it (``server_factory``, or a module-scoped fixture)."""
    port = server.pop("dicom_port", None) or free_port()
    http_port = server.pop("http_port", None) or free_port()
    data = data_dir or base / f"{name}-data"
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": port,
        "http_port": http_port,
        "data_dir": str(data),
        "bind_address": "127.0.0.1",
        "log_level": "INFO",
        "workers": 1,  # one process; test_workers.py starts several
        **server,
    }
    config = write_config(base / f"{name}.toml", settings, remotes or [], sections)
    running = RunningServer(
        config,
        data,
        port,
        settings["ae_title"],
        base / f"{name}.log",
        settings.get("database_url") or Settings(data_dir=data).resolved_database_url,
        http_port,
    )
    return running.start() if start else running


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[RunningServer] = []

    def make(*, start: bool = True, **options: Any) -> RunningServer:
        running = make_server(tmp_path, f"server{len(started)}", start=False, **options)
        started.append(running)  # killed even when it fails to start
        return running.start() if start else running

    yield make
    for running in started:
        running.kill()


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    return server_factory()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with postgres_database() as url:
        yield url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards (for module fixtures)."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:  # make test sets it, and tools/test-setup starts PostgreSQL
        pytest.fail(f"set {POSTGRES_ENV} to run against PostgreSQL (make test does)")
    name = f"pacsnode_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


def ct_dataset(
    *,
    study: str | None = None,
    series: str | None = None,
    patient_id: str = "PAT001",
    patient_name: str = "DOE^JOHN",
    modality: str = "CT",
    rows: int = 16,
    instance: str | None = None,
    sop_class: str = CTImageStorage,
    **attributes: Any,
) -> Dataset:
    """A small but complete image instance; attributes override or extend it."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.StudyDate = "20260115"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC001"
    ds.Modality = modality
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (rows * rows * 2 // 256) + b"\0" * (rows * rows * 2 % 256)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a Part 10 file: everything after its File Meta."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with path.open("rb") as fp:
        read_preamble(fp, True)
        _read_file_meta_info(fp)
        return fp.read()


def stored_path(server: RunningServer, sop_instance_uid: str) -> Path:
    archive = server.archive()
    try:
        found = archive.index.find_instance(sop_instance_uid)
        assert found is not None, f"{sop_instance_uid} is not in the index"
        return archive.storage.absolute(found.file_path)
    finally:
        archive.close()


def sigkill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def start_server(
    base: Path, remotes: list[dict[str, Any]] | None = None, **server: Any
) -> RunningServer:
    """A ``pacsnode serve`` in ``base``, for a module-scoped fixture to start and kill
    (``server_factory`` is per test)."""
    data = base / "data"
    port = server.pop("dicom_port", None) or free_port()
    http_port = free_port()
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": port,
        "http_port": http_port,
        "data_dir": str(data),
        "bind_address": "127.0.0.1",
        "log_level": "INFO",
        "workers": 1,
        **server,
    }
    config = write_config(base / "server.toml", settings, remotes or [])
    url = settings.get("database_url") or Settings(data_dir=data).resolved_database_url
    running = RunningServer(
        config, data, port, settings["ae_title"], base / "server.log", url, http_port
    )
    return running.start()


def _servers_of(item: pytest.Item) -> list[RunningServer]:
    """The servers a test's fixtures hold, directly or as an attribute of a set-up."""
    found: dict[int, RunningServer] = {}
    for value in getattr(item, "funcargs", {}).values():
        candidates = [value, *(vars(value).values() if hasattr(value, "__dict__") else ())]
        for candidate in candidates:
            if isinstance(candidate, RunningServer):
                found[id(candidate)] = candidate
    return list(found.values())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report ends with the log of each pacsnode it talked to: CI
    shows only the report, and why an association ended is written only there."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for running in _servers_of(item):
            tail = "\n".join(running.log().splitlines()[-40:])
            report.sections.append((f"pacsnode log {running.log_path}", tail))
