"""Peers for the tests: pynetdicom as a modality, the DCMTK command-line tools, Orthanc."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import xxhash
from pydicom import Dataset, dcmread
from pynetdicom import AE, _config, build_context
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

_config.STORE_SEND_CHUNKED_DATASET = True  # a path is sent as its exact bytes


def _without_nagle(create: Callable[..., socket.socket]) -> Callable[..., socket.socket]:
    """Test peers send with TCP_NODELAY, as modalities and DCMTK (TCP_NODELAY=1) do:
    pynetdicom leaves Nagle on, and each C-STORE would wait 40 ms for a delayed ACK."""

    def created(self: AssociationSocket, address: Any) -> socket.socket:
        sock = create(self, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return created


AssociationSocket._create_socket = _without_nagle(AssociationSocket._create_socket)  # type: ignore[method-assign]

VERIFICATION = "1.2.840.10008.1.1"


def stored_checksum(data: bytes) -> str:
    """The checksum the index should hold for a file of these bytes, computed here with
    the xxhash library rather than by pacsnode's own code."""
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


def associate(
    port: int,
    contexts: Sequence[tuple[str, Sequence[str]]],
    calling_ae: str = "MODALITY",
    called_ae: str = "PACSNODE",
    max_pdu: int = 16384,
    timeout: float = 30,
) -> Association:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    requested = [build_context(abstract, list(syntaxes)) for abstract, syntaxes in contexts]
    # The Maximum Length a requestor announces is associate()'s max_pdu; pynetdicom's
    # AE.maximum_pdu_size is what it announces as an acceptor only.
    return ae.associate("127.0.0.1", port, contexts=requested, ae_title=called_ae, max_pdu=max_pdu)


def file_context(path: Path) -> tuple[str, str]:
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


class _LostResponses(logging.Handler):
    """Counts pynetdicom's "Received unexpected C-STORE service message" (or another
    service's): its requestor's reactor thread took the response that ``send_c_store``
    was waiting for (pynetdicom issue 875), which then waits out its DIMSE timeout and
    aborts."""

    def __init__(self, service: str = "C-STORE") -> None:
        super().__init__(logging.WARNING)
        self.service = service
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if f"Received unexpected {self.service}" in record.getMessage():
            self.count += 1


def answers_echo(assoc: Association) -> bool:
    """Whether the peer answers a C-ECHO on this association. A response that
    pynetdicom's own reactor thread took instead (issue 875; more frequent the faster
    the answer) was an answer too, though pynetdicom then aborts the association."""
    lost = _LostResponses("C-ECHO")
    logger = logging.getLogger("pynetdicom.association")
    logger.addHandler(lost)
    try:
        status = assoc.send_c_echo().get("Status")
    finally:
        logger.removeHandler(lost)
    return status == 0 or (status is None and lost.count > 0)


def _store_all(
    port: int, contexts: Sequence[tuple[str, Sequence[str]]], calling_ae: str, items: list[Any]
) -> list[Dataset]:
    """Each item's C-STORE response. What follows a response pynetdicom lost to its own
    race is sent again on a new association (the server acknowledged it or not; a copy
    is kept once); a response missing for any other reason is returned as it is, empty."""
    lost = _LostResponses()
    logger = logging.getLogger("pynetdicom.association")
    logger.addHandler(lost)
    responses: list[Dataset] = []
    try:
        for _attempt in range(3):
            assoc = associate(port, contexts, calling_ae)
            assert assoc.is_established
            try:
                for item in items[len(responses) :]:
                    seen = lost.count
                    response = assoc.send_c_store(item)
                    if "Status" not in response and lost.count > seen:
                        break
                    responses.append(response)
                else:
                    return responses
            finally:
                if assoc.is_established:
                    assoc.release()
    finally:
        logger.removeHandler(lost)
    raise AssertionError(f"pynetdicom lost {lost.count} C-STORE responses to its own reactor")


def send_files(
    port: int, paths: Iterable[Path], calling_ae: str = "MODALITY"
) -> dict[Path, Dataset | None]:
    """C-STORE each file as its own bytes, one context per (SOP class, syntax) used."""
    paths = list(paths)
    needed = sorted({file_context(p) for p in paths})
    contexts = [(sop, [ts]) for sop, ts in needed]
    return dict(zip(paths, _store_all(port, contexts, calling_ae, paths), strict=True))


def send_datasets(
    port: int,
    datasets: Iterable[Dataset],
    calling_ae: str = "MODALITY",
    syntaxes: Sequence[str] = ("1.2.840.10008.1.2.1",),
) -> list[int]:
    """C-STORE data sets; returns each response status."""
    datasets = list(datasets)
    classes = sorted({str(ds.SOPClassUID) for ds in datasets})
    contexts = [(sop, syntaxes) for sop in classes]
    return [int(r.Status) for r in _store_all(port, contexts, calling_ae, datasets)]


def wait_for_echo(port: int, called_ae: str, process: subprocess.Popen[bytes]) -> None:
    """Return once the peer answers C-ECHO; fail if ``process`` exits first."""
    ae = AE(ae_title="WORKSTATION")
    ae.add_requested_context(VERIFICATION)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early with {process.returncode}"
        assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            assert status.Status == 0x0000
            return
        time.sleep(0.1)
    raise TimeoutError(f"{called_ae} on port {port} does not answer")


@contextmanager
def dcmtk_server(
    command: Sequence[str], port: int, called_ae: str, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A DCMTK server (storescp, dcmqrscp, wlmscpfs…) listening on ``port``, once it
    answers C-ECHO as ``called_ae``; stopped afterwards. Its output goes to ``log``."""
    out = log.open("wb") if log is not None else None
    process = subprocess.Popen(
        list(command),
        stdout=out or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
    )
    if out is not None:
        out.close()
    try:
        wait_for_echo(port, called_ae, process)
        yield process
    finally:
        process.terminate()
        process.wait(10)


def dcmtk(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK (or dicom3tools) tool, capturing its output. A tool that is missing
    fails the test: CI installs them, and a check that quietly did not run proves
    nothing."""
    if shutil.which(args[0]) is None:
        pytest.fail(f"{args[0]} is not installed (apt-get install dcmtk dicom3tools)")
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )


def pacsnode_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``pacsnode`` command, with a wide terminal so that tables stay whole."""
    return subprocess.run(
        [sys.executable, "-m", "pacsnode", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )


@dataclass(frozen=True)
class Orthanc:
    dicom_port: int
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@contextmanager
def orthanc(
    directory: Path,
    modalities: dict[str, tuple[str, int]],
    dicom_port: int,
    http_port: int,
    **settings: Any,
) -> Iterator[Orthanc]:
    """A local Orthanc (the Debian package) with AE title ORTHANC that knows
    ``modalities`` (name to AE title and port), answering once its REST API does;
    ``settings`` are further Orthanc configuration options."""
    if shutil.which("Orthanc") is None:
        pytest.fail("Orthanc is not installed (make test installs it as root)")
    config = {
        "Name": directory.name,
        "StorageDirectory": str(directory / "orthanc-db"),
        "IndexDirectory": str(directory / "orthanc-db"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomModalities": {
            name: [ae, "127.0.0.1", port] for name, (ae, port) in modalities.items()
        },
        **settings,
    }
    (directory / "orthanc.json").write_text(json.dumps(config))
    with (directory / "orthanc.log").open("wb") as log:
        process = subprocess.Popen(
            ["Orthanc", str(directory / "orthanc.json")], stdout=log, stderr=log
        )
    running = Orthanc(dicom_port, http_port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{running.url}/system").raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, "Orthanc exited early"
                assert time.monotonic() < deadline, "Orthanc did not start"
                time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        process.wait(20)
