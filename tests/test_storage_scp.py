"""The Storage SCP against real peers: what arrives is kept exactly, or refused clearly."""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path

import pydicom
import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    corpus,
    ct_dataset,
    dataset_bytes,
    save,
    stored_path,
)
from peers import VERIFICATION, associate, dcmtk, send_datasets, send_files
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from pacsnode.archive.uids import STORAGE_TRANSFER_SYNTAXES, syntax_of_encoding

REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def has_complete_meta(path: Path) -> bool:
    meta = dcmread(path, stop_before_pixels=True, force=True).file_meta
    return all(
        meta.get(k)
        for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
    )


def structurally_broken(path: Path) -> bool:
    """Independent oracle: DCMTK cannot read it, an identifying UID is missing, or the
    File Meta (whence a sender takes the Affected SOP Instance UID) names another
    instance than the data set."""
    dump = dcmtk("dcmdump", str(path))
    if dump.returncode != 0 or any(line.startswith("E:") for line in dump.stderr.splitlines()):
        return True
    ds = dcmread(path, force=True, stop_before_pixels=True)
    if ds.file_meta.get("MediaStorageSOPInstanceUID") != ds.get("SOPInstanceUID"):
        return True
    return any(not ds.get(keyword) for keyword in REQUIRED_UIDS)


def test_every_corpus_file_is_kept_byte_for_byte_or_refused_clearly(
    server: RunningServer,
) -> None:
    files = [p for p in corpus() if has_complete_meta(p)]
    assert len(files) > 100
    responses = send_files(server.port, files)
    archive = server.archive()
    stored = refused = 0
    for path, response in responses.items():
        assert response is not None, f"no response for {path.name}"
        status = int(response.Status)
        if status != 0x0000:
            refused += 1
            assert status in (0xC000, 0xA900), (path.name, hex(status))
            assert response.ErrorComment, path.name
            assert structurally_broken(path), f"{path.name} refused: {response.ErrorComment}"
            continue
        stored += 1
        assert not structurally_broken(path), f"{path.name} should have been refused"
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        found = archive.index.find_instance(uid)
        assert found is not None, path.name
        # Several corpus files are the same instance in other syntaxes; the first copy
        # is kept, so compare with whichever file of that UID was sent first.
        first = next(p for p in responses if responses[p].Status == 0 and _uid(p) == uid)
        assert dataset_bytes(archive.storage.absolute(found.file_path)) == dataset_bytes(first)
    archive.close()
    assert stored > 100 and refused > 0
    # The broken files did not harm the association: the server still answers.
    assoc = associate(server.port, [(VERIFICATION, ["1.2.840.10008.1.2"])])
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def test_corpus_files_without_file_meta_are_sent_as_data_sets(server: RunningServer) -> None:
    """Files with no (or incomplete) File Meta are sent as their decoded data sets."""
    sent = 0
    for path in corpus():
        if has_complete_meta(path):
            continue
        ds = dcmread(path, force=True)
        if not (ds.get("SOPClassUID") and ds.get("SOPInstanceUID")):
            continue  # no C-STORE request can be formed without them
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax_of_encoding(ds)
        syntaxes = [str(ds.file_meta.TransferSyntaxUID)]
        assoc = associate(server.port, [(str(ds.SOPClassUID), syntaxes)])
        response = assoc.send_c_store(ds)
        assoc.release()
        complete = all(ds.get(keyword) for keyword in REQUIRED_UIDS)
        assert (int(response.Status) == 0) == complete, (path.name, response)
        sent += 1
    assert sent >= 3


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True, force=True).get("SOPInstanceUID", ""))


def test_stored_file_is_part10_with_source_ae_title(server: RunningServer) -> None:
    ct = PathFile.of(pydicom.data.get_testdata_file("CT_small.dcm", read=False))
    send_files(server.port, [ct], calling_ae="CTMODALITY")
    stored = stored_path(server, _uid(ct))
    meta = dcmread(stored).file_meta
    assert meta.SourceApplicationEntityTitle == "CTMODALITY"
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.MediaStorageSOPInstanceUID == _uid(ct)
    dump = dcmtk("dcmdump", str(stored))
    assert dump.returncode == 0 and "E:" not in dump.stderr


class PathFile:
    @staticmethod
    def of(name: str | None) -> Path:
        assert name is not None
        return Path(name)


def dcmtk_can_identify(path: Path) -> bool:
    """storescu needs SOP Class and Instance UIDs that DCMTK can read (not UN)."""
    dump = dcmtk("dcmdump", str(path)).stdout
    return "(0008,0016) UI" in dump and "(0008,0018) UI" in dump


DCMTK_OPTION_BY_SYNTAX = {
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "-xx",  # JPEG extended
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.5": "-xr",  # RLE
    "1.2.840.10008.1.2.1.99": "-xd",  # deflate
    "1.2.840.10008.1.2.2": "-xb",  # big endian
    "1.2.840.10008.1.2": "-xi",  # implicit
}


@pytest.mark.parametrize(
    "syntax", DCMTK_OPTION_BY_SYNTAX, ids=[pydicom.uid.UID(u).name for u in DCMTK_OPTION_BY_SYNTAX]
)
def test_dcmtk_storescu_sends_each_syntax_unchanged(server: RunningServer, syntax: str) -> None:
    files = [
        p
        for p in corpus()
        if has_complete_meta(p)
        and str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax
        and not structurally_broken(p)
        and dcmtk_can_identify(p)
    ]
    assert files, f"no corpus file in {syntax}"
    result = dcmtk(
        "storescu",
        "-R",
        DCMTK_OPTION_BY_SYNTAX[syntax],
        "-nh",
        "-aet",
        "STORESCU",
        "-aec",
        "PACSNODE",
        "127.0.0.1",
        str(server.port),
        *map(str, files),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    archive = server.archive()
    for path in files:
        found = archive.index.find_instance(_uid(path))
        assert found is not None, path.name
        assert found.transfer_syntax_uid == syntax
    archive.close()


def _generated(syntax: str, directory: Path) -> Path:
    """An object in ``syntax``: real encodings for native syntaxes, an opaque bitstream
    in encapsulated ones (the archive keeps bytes; it need not decode them)."""
    ds = ct_dataset(rows=8)
    uid = pydicom.uid.UID(syntax)
    if uid.is_encapsulated:
        ds.PixelData = encapsulate([b"\xff\xd8opaque-bitstream-" + syntax.encode() + b"\xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    path = directory / f"{syntax}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_generated_object_of_every_transfer_syntax(server: RunningServer, tmp_path: Path) -> None:
    files = [_generated(syntax, tmp_path) for syntax in STORAGE_TRANSFER_SYNTAXES]
    responses = send_files(server.port, files)
    assert {path.name: int(r.Status) for path, r in responses.items() if r} == {
        path.name: 0 for path in files
    }
    for path, syntax in zip(files, STORAGE_TRANSFER_SYNTAXES, strict=True):
        stored = stored_path(server, _uid(path))
        assert dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
        assert dataset_bytes(stored) == dataset_bytes(path)


def test_one_context_per_syntax_each_accepted(server: RunningServer, tmp_path: Path) -> None:
    """A separate context per syntax, as DCMTK's storescu proposes them by default:
    each one we accept is accepted, in its own syntax, and a file goes in its own."""
    jpeg = _generated("1.2.840.10008.1.2.4.50", tmp_path)
    ct = "1.2.840.10008.5.1.4.1.1.2"
    separate = associate(server.port, [(ct, [ts]) for ts in STORAGE_TRANSFER_SYNTAXES[:40]])
    accepted = [str(cx.transfer_syntax[0]) for cx in separate.accepted_contexts]
    assert accepted == list(STORAGE_TRANSFER_SYNTAXES[:40])
    assert separate.send_c_store(jpeg).Status == 0
    separate.release()


def schick_dataset() -> Dataset:
    """A CDRClient-like intra-oral image with Schick's private groups (digest B5)."""
    uid = "1.2.840.114244.030.4.337057497.868863780.4817"  # leading-zero component
    ds = ct_dataset(instance=uid, modality="IO", sop_class="1.2.840.10008.5.1.4.1.1.1.3")
    ds.add_new(0x00090010, "LO", "SCHICK TECHNOLOGIES - Viewset Creator ID")
    ds.add_new(0x00091001, "UI", uid)
    ds.add_new(0x00091002, "LO", "FMX 18")
    items = []
    for number in range(1, 4):
        item = Dataset()
        item.add_new(0x00090010, "LO", "SCHICK TECHNOLOGIES - Viewset Item Creator ID")
        item.add_new(0x00091001, "UI", uid if number == 1 else "")
        item.add_new(0x00091002, "US", number)
        item.add_new(0x00091006, "US", [10 * number, 20, 300, 240])
        items.append(item)
    ds.add_new(0x00091003, "SQ", items)
    ds.add_new(0x00091004, "UL", 2)
    ds.add_new(0x00210010, "LO", "SCHICK TECHNOLOGIES - Change List Creator ID")
    ds.add_new(0x00210011, "LO", "SCHICK TECHNOLOGIES - Note Item Creator ID")
    ds.add_new(0x00211001, "UI", uid)
    change = Dataset()
    change.add_new(0x00210010, "LO", "SCHICK TECHNOLOGIES - Change Item Creator ID")
    change.add_new(0x00211005, "OB", bytes(range(256)) * 4)
    ds.add_new(0x00211002, "SQ", [change])
    ds.add_new(0x00211101, "UI", uid)
    ds.add_new(0x00211102, "SQ", [])
    # The creator at (0029,1010) leaves (0029,1001) an orphan, as in the document.
    ds.add_new(0x00291010, "LO", "SCHICK TECHNOLOGIES - Image Security Creator ID")
    ds.add_new(0x00291001, "UL", 0x4B788093)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def test_schick_private_groups_come_back_byte_identical(
    server: RunningServer, tmp_path: Path
) -> None:
    source = save(schick_dataset(), tmp_path / "schick.dcm")
    # CDRClient: Implicit VR Little Endian only, 16384-byte PDUs.
    sop, syntax = "1.2.840.10008.5.1.4.1.1.1.3", "1.2.840.10008.1.2"
    assoc = associate(server.port, [(sop, [syntax])], calling_ae="CDRCLIENT", max_pdu=16384)
    assert assoc.send_c_store(source).Status == 0
    assoc.release()
    stored = stored_path(server, "1.2.840.114244.030.4.337057497.868863780.4817")
    assert dataset_bytes(stored) == dataset_bytes(source)
    dump = dcmtk("dcmdump", str(stored)).stdout
    orphan = next(line for line in dump.splitlines() if line.startswith("(0029,1001)"))
    assert "93\\80\\78\\4b" in orphan  # kept as the raw bytes it arrived as
    kept = dcmread(stored)
    assert kept.private_block(0x0021, "SCHICK TECHNOLOGIES - Note Item Creator ID")[0x01].value
    assert kept[0x00291010].value == b"SCHICK TECHNOLOGIES - Image Security Creator ID "

    # And through DCMTK's storescu, which re-encodes what it reads: still identical.
    copy = tmp_path / "again.dcm"
    ds = dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(copy, enforce_file_format=True)
    sent = dcmtk("storescu", "-xi", "-aec", "PACSNODE", "127.0.0.1", str(server.port), str(copy))
    assert sent.returncode == 0, sent.stderr
    assert dataset_bytes(stored_path(server, str(ds.SOPInstanceUID))) == dataset_bytes(copy)


def _raw_file(path: Path, meta: FileMetaDataset, body: bytes) -> Path:
    """A Part 10 file with valid File Meta and whatever data set bytes we choose."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    buffer = DicomBytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, meta)
    path.write_bytes(buffer.getvalue() + body)
    return path


def _meta(sop_class: str, instance: str, syntax: str = ExplicitVRLittleEndian) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = syntax
    return meta


def test_refusals_have_status_comment_and_log_and_keep_the_association(
    server: RunningServer, tmp_path: Path
) -> None:
    ct_class, mr_class = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
    mismatch = ct_dataset(sop_class=mr_class)
    mismatch_path = save(mismatch, tmp_path / "mr.dcm")
    mismatch_body = dataset_bytes(mismatch_path)
    wrong_class = _raw_file(
        tmp_path / "wrong.dcm", _meta(ct_class, mismatch.SOPInstanceUID), mismatch_body
    )
    no_study = ct_dataset()
    del no_study.StudyInstanceUID
    no_study_path = save(no_study, tmp_path / "nostudy.dcm")
    other = ct_dataset()  # the request (from File Meta) names another instance
    other_path = save(other, tmp_path / "other.dcm")
    other_instance = _raw_file(
        tmp_path / "instance.dcm", _meta(ct_class, generate_uid()), dataset_bytes(other_path)
    )
    garbage_uid = generate_uid()
    garbage = _raw_file(
        tmp_path / "garbage.dcm", _meta(ct_class, garbage_uid), b"\x08\x00\x16\x00UI\xff\x7f" * 9
    )
    good = save(ct_dataset(), tmp_path / "good.dcm")

    assoc = associate(
        server.port,
        [(ct_class, [ExplicitVRLittleEndian]), (VERIFICATION, [ImplicitVRLittleEndian])],
    )
    statuses = {}
    for name, path in {
        "class": wrong_class,
        "study": no_study_path,
        "instance": other_instance,
        "garbage": garbage,
        "good": good,
    }.items():
        response = assoc.send_c_store(path)
        statuses[name] = (int(response.Status), str(response.get("ErrorComment", "")))
    assert assoc.send_c_echo().Status == 0  # the association survived every refusal
    assoc.release()

    assert statuses["class"][0] == 0xA900 and "SOP Class" in statuses["class"][1]
    assert statuses["study"] == (0xA900, "StudyInstanceUID is missing")
    assert statuses["instance"] == (0xA900, "SOP Instance UID differs from the request's")
    assert statuses["garbage"][0] == 0xC000 and statuses["garbage"][1]
    assert statuses["good"] == (0, "")
    archive = server.archive()
    assert archive.index.find_instance(str(mismatch.SOPInstanceUID)) is None
    assert archive.index.find_instance(garbage_uid) is None
    assert archive.index.find_instance(str(other.SOPInstanceUID)) is None
    assert archive.index.stats().instances == 1
    archive.close()
    log = server.log()
    assert "status 0xA900" in log and "status 0xC000" in log


def _two_versions(tmp_path: Path) -> tuple[Dataset, Dataset]:
    first = ct_dataset(patient_name="FIRST^COPY")
    second = copy.deepcopy(first)
    second.PatientName = "SECOND^COPY"
    return first, second


@pytest.mark.parametrize(
    ("policy", "second_status", "kept_name"),
    [
        ("keep", 0x0000, "FIRST^COPY"),
        ("overwrite", 0x0000, "SECOND^COPY"),
        ("refuse", 0x0111, "FIRST^COPY"),
    ],
)
def test_duplicate_policies(
    server_factory: ServerFactory,
    tmp_path: Path,
    policy: str,
    second_status: int,
    kept_name: str,
) -> None:
    server = server_factory(duplicate_policy=policy)
    first, second = _two_versions(tmp_path)
    assert send_datasets(server.port, [first]) == [0]
    assert send_datasets(server.port, [second]) == [second_status]
    stored = stored_path(server, str(first.SOPInstanceUID))
    assert str(dcmread(stored).PatientName) == kept_name
    archive = server.archive()
    assert archive.index.stats().instances == 1
    files = list(archive.storage.root.rglob("*.dcm"))
    assert files == [stored]  # a replaced or refused copy leaves no file behind
    archive.close()


def test_duplicate_policy_per_remote_ae(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory(
        duplicate_policy="keep",
        remotes=[
            {
                "ae_title": "CDRCLIENT",
                "host": "127.0.0.1",
                "port": 104,
                "duplicate_policy": "overwrite",
            }
        ],
    )
    first, second = _two_versions(tmp_path)
    send_datasets(server.port, [first], calling_ae="CDRCLIENT")
    send_datasets(server.port, [second], calling_ae="OTHER")
    assert str(dcmread(stored_path(server, first.SOPInstanceUID)).PatientName) == "FIRST^COPY"
    send_datasets(server.port, [second], calling_ae="CDRCLIENT")
    assert str(dcmread(stored_path(server, first.SOPInstanceUID)).PatientName) == "SECOND^COPY"


def test_deflated_and_big_endian_are_kept_as_sent(server: RunningServer, tmp_path: Path) -> None:
    sources = []
    for syntax in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian):
        ds = ct_dataset(rows=32)
        ds.file_meta.TransferSyntaxUID = syntax
        sources.append(save(ds, tmp_path / f"{syntax}.dcm"))
    responses = send_files(server.port, sources)
    assert all(r is not None and r.Status == 0 for r in responses.values())
    for source in sources:
        stored = stored_path(server, _uid(source))
        assert (
            hashlib.sha256(dataset_bytes(stored)).digest()
            == hashlib.sha256(dataset_bytes(source)).digest()
        )
        assert dcmread(stored).PixelData == dcmread(source).PixelData


def test_shared_corpus_copy_untouched(tmp_path: Path) -> None:
    """The corpus files the tests send are never modified by sending them."""
    ct = PathFile.of(pydicom.data.get_testdata_file("CT_small.dcm", read=False))
    copy = shutil.copy(ct, tmp_path / "ct.dcm")
    assert Path(copy).read_bytes() == ct.read_bytes()
