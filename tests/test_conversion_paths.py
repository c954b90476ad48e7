"""Conversions through the real doors, checked element by element at every level.

Schick-like objects with private sequences (received in Explicit and Implicit VR,
with defined and undefined lengths), an object with deep standard sequences and a
JPEG image are stored, then taken out in Implicit VR Little Endian four ways: C-MOVE
to a pynetdicom receiver that accepts nothing else, C-MOVE to DCMTK ``storescp
+xi``, WADO-RS with ``transfer-syntax=1.2.840.10008.1.2``, and a routing rule with
that target syntax. What arrives is read by ``dcmdump`` and pydicom and compared
with the source at every nesting level.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, dataset_bytes, free_port, write_config
from dataset_compare import differences, read
from peers import associate, send_files
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, evt
from schick import IO_FOR_PRESENTATION, schick_files
from test_dicomweb import parts
from test_encoding import PIXEL_MODULE, dcmdump_problems
from test_routing import StoreScp, wait_for
from test_storage_scp import _meta, _raw_file

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
CORPUS = ("rtplan.dcm", "waveform_ecg.dcm", "SC_rgb_jpeg_dcmtk.dcm")


class ImplicitOnlyReceiver:
    """A pynetdicom Storage SCP accepting Implicit VR Little Endian only, keeping the
    bytes exactly as they came off the wire."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.port = free_port()
        ae = AE(ae_title="IMPLICIT")
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, [ImplicitVRLittleEndian])
        ae.add_supported_context(IO_FOR_PRESENTATION, [ImplicitVRLittleEndian])
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: evt.Event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        (self.folder / uid).write_bytes(event.encoded_dataset())
        return 0x0000

    def received(self, uid: str) -> Path | None:
        path = self.folder / uid
        return path if path.exists() else None


@dataclass
class Setup:
    server: RunningServer
    sources: list[Path]
    receiver: ImplicitOnlyReceiver
    storescp: StoreScp
    routed: StoreScp


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("conversions")
    receiver = ImplicitOnlyReceiver(folder / "receiver")
    storescp = StoreScp(folder / "storescp", options=("+xi",)).start()
    routed = StoreScp(folder / "routed").start()
    server = _start_server(folder, receiver, storescp, routed)
    sources = schick_files(folder / "sources")
    sources += [consistent(Path(get_testdata_file(n)), folder / "sources") for n in CORPUS]
    try:
        stored = send_files(server.port, sources)
        assert all(status is not None and status.Status == 0 for status in stored.values())
        yield Setup(server, sources, receiver, storescp, routed)
    finally:
        server.kill()
        receiver.server.shutdown()
        storescp.stop()
        routed.stop()


def consistent(path: Path, folder: Path) -> Path:
    """A copy whose File Meta names the instance its data set holds (rtplan.dcm's does
    not): a sender takes the request's Affected SOP Instance UID from it, and a data
    set that is not the requested instance is refused. The data set bytes are kept."""
    ds = dcmread(path, stop_before_pixels=True)
    meta = _meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), ds.file_meta.TransferSyntaxUID)
    return _raw_file(folder / path.name, meta, dataset_bytes(path))


def _start_server(
    folder: Path, receiver: ImplicitOnlyReceiver, storescp: StoreScp, routed: StoreScp
) -> RunningServer:
    data = folder / "data"
    http_port = free_port()
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": free_port(),
        "http_port": http_port,
        "data_dir": str(data),
        "bind_address": "127.0.0.1",
    }
    remotes = [
        {"ae_title": "IMPLICIT", "host": "127.0.0.1", "port": receiver.port},
        {"ae_title": "STORESCP", "host": "127.0.0.1", "port": storescp.port},
        {"ae_title": "ROUTED", "host": "127.0.0.1", "port": routed.port},
    ]
    config = write_config(folder / "pacsnode.toml", settings, remotes)
    with config.open("a") as handle:
        handle.write(
            '\n[[route]]\nname = "implicit"\ndestinations = ["ROUTED"]\n'
            f'transfer_syntax = "{ImplicitVRLittleEndian}"\n'
        )
    server = RunningServer(
        config,
        data,
        settings["dicom_port"],
        "PACSNODE",
        folder / "pacsnode.log",
        f"sqlite:///{data / 'index.sqlite'}",
        http_port,
    )
    return server.start()


def _move_everything(setup: Setup, destination: str) -> None:
    studies = {
        str(dcmread(path, stop_before_pixels=True).StudyInstanceUID) for path in setup.sources
    }
    assoc = associate(setup.server.port, [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])], "WS")
    try:
        for study in sorted(studies):
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = study
            final = list(assoc.send_c_move(identifier, destination, STUDY_ROOT_MOVE))[-1][0]
            assert final.Status == 0x0000, f"C-MOVE of {study} to {destination}: {final}"
    finally:
        assoc.release()


def _check(source: Path, received: Path) -> None:
    result = read(received)
    assert result.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian, source.name
    assert dcmdump_problems([received]) == [], source.name
    compressed = read(source).file_meta.TransferSyntaxUID.is_compressed
    changed = PIXEL_MODULE if compressed else frozenset()
    assert differences(read(source), result, changed) == [], source.name


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_c_move_to_an_implicit_only_pynetdicom_receiver(setup: Setup) -> None:
    _move_everything(setup, "IMPLICIT")
    for source in setup.sources:
        received = setup.receiver.received(_uid(source))
        assert received is not None, f"{source.name} not received"
        _check(source, received)


def test_c_move_to_storescp_accepting_implicit_only(setup: Setup) -> None:
    _move_everything(setup, "STORESCP")
    for source in setup.sources:
        received = setup.storescp.received(_uid(source))
        assert received is not None, f"{source.name} not received"
        _check(source, received)


def test_wado_rs_in_implicit_vr(setup: Setup, tmp_path: Path) -> None:
    accept = (
        f'multipart/related; type="application/dicom"; transfer-syntax={ImplicitVRLittleEndian}'
    )
    for source in setup.sources:
        ds = dcmread(source, stop_before_pixels=True)
        url = (
            f"{setup.server.url}/dicom-web/studies/{ds.StudyInstanceUID}"
            f"/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        )
        [(headers, body)] = parts(httpx.get(url, headers={"Accept": accept}, timeout=30))
        assert headers["Content-Type"].endswith(f"transfer-syntax={ImplicitVRLittleEndian}")
        received = tmp_path / source.name
        received.write_bytes(body)
        _check(source, received)


def test_route_with_an_implicit_target_syntax(setup: Setup) -> None:
    for source in setup.sources:
        received = wait_for(
            lambda s=source: setup.routed.received(_uid(s)), f"{source.name} routed"
        )
        _check(source, received)
