"""Which transfer syntax the acceptor picks within one presentation context.

The first in the proposer's order that we accept (digest-000_004 part C item 7, B7
item 8): SIDICOM QR's [ELE, ILE, EBE] gives ELE, CDRClient's [ILE, JPEG…] gives ILE, a
modality's [JPEG 2000, ELE] gives JPEG 2000, stored as received. With
``transfer_syntax_choice = "ours"`` our own order wins instead. Checked with
pynetdicom and with DCMTK ``storescu`` proposing all its syntaxes in one context.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    ct_dataset,
    dataset_bytes,
    free_port,
    stored_path,
)
from peers import associate, dcmtk, send_datasets
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

ELE, ILE, EBE = ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian
SIDICOM = [ELE, ILE, EBE]
CDRCLIENT = [ILE, JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000Lossless, JPEG2000]
MODALITY = [JPEG2000, ELE]
J2K_FILE = Path(get_testdata_file("JPEG2000.dcm"))
JPEG_LOSSLESS_FILE = Path(get_testdata_file("JPEG-LL.dcm"))
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


def chosen(server: RunningServer, *proposals: list[str]) -> list[str]:
    """What the server accepted for each proposed context (one CT context each)."""
    assoc = associate(server.port, [(CTImageStorage, proposal) for proposal in proposals])
    assert assoc.is_established
    contexts = sorted(assoc.accepted_contexts, key=lambda cx: cx.context_id)
    assoc.release()
    return [str(cx.transfer_syntax[0]) for cx in contexts]


def test_the_proposers_order_wins(server: RunningServer) -> None:
    assert chosen(server, SIDICOM, CDRCLIENT, MODALITY) == [ELE, ILE, JPEG2000]


def test_our_order_when_configured(server_factory: ServerFactory) -> None:
    server = server_factory(transfer_syntax_choice="ours")
    assert chosen(server, SIDICOM, CDRCLIENT, MODALITY) == [ELE, ILE, ELE]


def test_jpeg_2000_proposed_first_is_stored_as_received(server: RunningServer) -> None:
    source = dcmread(J2K_FILE)
    assoc = associate(server.port, [(str(source.SOPClassUID), MODALITY)])
    assert str(assoc.accepted_contexts[0].transfer_syntax[0]) == JPEG2000
    assert assoc.send_c_store(J2K_FILE).Status == 0x0000
    assoc.release()
    stored = stored_path(server, str(source.SOPInstanceUID))
    assert dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEG2000
    assert dataset_bytes(stored) == dataset_bytes(J2K_FILE)


def _storescu_accepted(server: RunningServer, option: str, path: Path) -> str:
    """storescu proposing its syntaxes for ``option`` in one context (+C): what the
    server accepted, as storescu's debug log of the A-ASSOCIATE-AC says."""
    done = dcmtk(
        "storescu", "-d", option, "+C", "-R", "-aec", "PACSNODE",
        "127.0.0.1", str(server.port), str(path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    accepted = re.findall(r"Accepted Transfer Syntax: =(\S+)", done.stdout + done.stderr)
    assert len(accepted) == 1, accepted
    return accepted[0]


@pytest.mark.parametrize(
    ("option", "source", "expected", "uid"),
    [
        ("-xe", "ct", "LittleEndianExplicit", ELE),  # proposes ELE, EBE, ILE
        ("-xb", "ct", "BigEndianExplicit", EBE),  # proposes EBE, ELE, ILE
        ("-xi", "ct", "LittleEndianImplicit", ILE),  # proposes ILE only
        ("-xs", "jpeg", "JPEGLossless:Non-hierarchical-1stOrderPrediction", JPEG_LOSSLESS),
    ],
)
def test_storescu_proposals_in_one_context(
    server: RunningServer, tmp_path: Path, option: str, source: str, expected: str, uid: str
) -> None:
    """Stored as received: in the syntax chosen, which storescu sent."""
    if source == "ct":
        ds = ct_dataset()
        path = tmp_path / "ct.dcm"
        ds.save_as(path, enforce_file_format=True)
    else:
        path = JPEG_LOSSLESS_FILE
        ds = dcmread(path, stop_before_pixels=True)
    assert _storescu_accepted(server, option, path) == expected
    stored = dcmread(stored_path(server, str(ds.SOPInstanceUID)), stop_before_pixels=True)
    assert stored.file_meta.TransferSyntaxUID == uid


def test_an_implicit_object_goes_out_implicit_to_a_receiver_preferring_explicit(
    server_factory: ServerFactory,
) -> None:
    """As requestor we propose the stored syntax alone first, then the uncompressed
    fallback (B7 item 34): a pynetdicom receiver that would pick ELE from [ELE, ILE]
    gets the ILE object unchanged on the context proposing ILE alone."""
    from pynetdicom import AE, StoragePresentationContexts, evt

    arrived: dict[str, tuple[str, bytes]] = {}
    proposed: list[list[str]] = []

    def on_store(event: evt.Event) -> int:
        syntax = str(event.context.transfer_syntax)
        data = event.encoded_dataset(include_meta=False)
        arrived[str(event.request.AffectedSOPInstanceUID)] = (syntax, data)
        proposed.extend(
            [str(ts) for ts in cx.transfer_syntax]
            for cx in event.assoc.requestor.requested_contexts
            if cx.abstract_syntax == CTImageStorage
        )
        return 0x0000

    receiver = AE(ae_title="PREFERS")
    for context in StoragePresentationContexts:
        receiver.add_supported_context(context.abstract_syntax, [ELE, ILE])
    port = free_port()
    running = receiver.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        server = server_factory(
            remotes=[{"ae_title": "PREFERS", "host": "127.0.0.1", "port": port}]
        )
        ds = ct_dataset()
        assert send_datasets(server.port, [ds], syntaxes=[ILE]) == [0x0000]
        stored = stored_path(server, str(ds.SOPInstanceUID))
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = ds.StudyInstanceUID
        assoc = associate(server.port, [(STUDY_ROOT_MOVE, [ELE])])
        [*_, (final, _)] = assoc.send_c_move(identifier, "PREFERS", STUDY_ROOT_MOVE)
        assoc.release()
        assert final.Status == 0x0000
    finally:
        running.shutdown()
    assert arrived[str(ds.SOPInstanceUID)] == (ILE, dataset_bytes(stored))
    assert [ILE] in proposed and proposed.index([ILE]) < proposed.index([ELE, ILE])
