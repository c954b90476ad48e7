"""DICOMDIR media: ``pacsnode export-media`` as File-set Creator and ``pacsnode import``
of a file-set as File-set Reader, checked with pydicom, DCMTK and a full round trip."""

from __future__ import annotations

import io
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import ServerFactory, ct_dataset, dataset_bytes, save
from peers import dcmtk, pacsnode_cli, send_datasets, send_files
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    JPEG2000,
    BasicTextSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    RawDataStorage,
    generate_uid,
)

from pacsnode.archive.core import Archive
from pacsnode.archive.retrieve import locate
from pacsnode.config import Settings
from pacsnode.media.dicomdir import as_stored

FILE_ID_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")


def stored_file(data_dir: Path, sop_instance_uid: str) -> Path:
    archive = Archive(Settings(data_dir=data_dir))
    try:
        found = archive.index.find_instance(sop_instance_uid)
        assert found is not None, f"{sop_instance_uid} is not in the index"
        return archive.storage.absolute(found.file_path)
    finally:
        archive.close()


def outcome(stdout: str, name: str) -> int:
    found = re.search(rf"{name}\W+(\d+)", stdout)
    return int(found.group(1)) if found else 0


def test_export_read_back_and_round_trip(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory()
    study = generate_uid()
    series = generate_uid()
    sources = [
        save(
            ct_dataset(study=study, series=series, InstanceNumber=n, SeriesNumber=1),
            tmp_path / f"ct{n}.dcm",
        )
        for n in range(1, 4)
    ]
    j2k = Path(get_testdata_file("JPEG2000.dcm"))
    assert dcmread(j2k).file_meta.TransferSyntaxUID == JPEG2000
    report = Path(get_testdata_file("test-SR.dcm"))  # empty Patient ID and Study ID
    statuses = send_files(server.port, [*sources, j2k, report])
    assert all(s is not None and s.Status == 0 for s in statuses.values())
    j2k_study = str(dcmread(j2k).StudyInstanceUID)
    j2k_sop = str(dcmread(j2k).SOPInstanceUID)

    out = tmp_path / "cd"
    exported = pacsnode_cli(
        "export-media", "--study", study, "--study", j2k_study,
        "--study", str(dcmread(report).StudyInstanceUID),
        "--config", str(server.config_path), str(out),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "exported 5 instances" in exported.stdout
    assert f"converted {j2k_sop}" in exported.stdout

    # pydicom's File-set Reader sees the five instances, all in Explicit VR Little Endian.
    fileset = FileSet(dcmread(out / "DICOMDIR"))
    assert fileset.ID == "PACSNODE"
    assert len(fileset) == 5
    (sr,) = fileset.find(SOPInstanceUID=dcmread(report).SOPInstanceUID)
    assert sr["StudyID"].value == "-" and sr["PatientID"].value.startswith("NOID")
    for instance in fileset:
        assert instance.TransferSyntaxUID == ExplicitVRLittleEndian
        parts = Path(instance.FileID).parts
        assert len(parts) <= 8 and all(FILE_ID_COMPONENT.match(p) for p in parts), parts
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert all(
        len(f.parts) <= 8 and all(FILE_ID_COMPONENT.match(c) for c in f.parts) for f in files
    )

    dumped = dcmtk("dcmdump", str(out / "DICOMDIR"))
    assert dumped.returncode == 0, dumped.stderr
    assert "DirectoryRecordSequence" in dumped.stdout
    # DCMTK's STD-GEN-CD creator accepts every file we wrote
    names = [str(f) for f in files if f.name != "DICOMDIR"]
    again = dcmtk("dcmgpdir", "+I", "+id", str(out), "+D", str(tmp_path / "CHECK"), *names)
    said = again.stdout + again.stderr
    assert again.returncode == 0 and "E:" not in said and "cannot be added" not in said, said
    for tool in ("dciodvfy", "dcentvfy"):  # and dicom3tools find no error
        checked = dcmtk(tool, str(out / "DICOMDIR"))
        assert "Error" not in checked.stdout + checked.stderr, checked.stderr

    fresh = tmp_path / "fresh"
    imported = pacsnode_cli("import", str(out), "--data-dir", str(fresh))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert outcome(imported.stdout, "stored") == 5, imported.stdout
    for source in [*sources, report]:
        sop = str(dcmread(source).SOPInstanceUID)
        original = stored_file(server.data_dir, sop)
        assert dataset_bytes(stored_file(fresh, sop)) == dataset_bytes(original)
    back = dcmread(stored_file(fresh, j2k_sop))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, dcmread(j2k).pixel_array)


def test_export_refuses_unknown_profile(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory(start=False)
    server.archive().close()  # an empty archive
    result = pacsnode_cli(
        "export-media", "--study", "1.2.3", "--profile", "STD-NOPE",
        "--config", str(server.config_path), str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown profile" in result.stdout + result.stderr
    nothing = pacsnode_cli(
        "export-media", "--study", "1.2.3",
        "--config", str(server.config_path), str(tmp_path / "out"),
    )  # fmt: skip
    assert nothing.returncode == 2
    assert "no stored instance" in nothing.stdout + nothing.stderr
    assert not (tmp_path / "out" / "DICOMDIR").exists()


def test_import_of_a_fileset_missing_a_file(tmp_path: Path) -> None:
    """Only what the DICOMDIR references is imported; a missing file is reported."""
    study = generate_uid()
    fileset = FileSet()
    datasets = [
        ct_dataset(study=study, InstanceNumber=n, SeriesNumber=1, StudyID="1") for n in range(1, 4)
    ]
    for ds in datasets:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        fileset.add(ds)
    media = tmp_path / "media"
    fileset.write(media)
    gone = next(i for i in FileSet(dcmread(media / "DICOMDIR")))
    Path(gone.path).unlink()
    stray = ct_dataset(study=study, InstanceNumber=9, SeriesNumber=1)
    save(stray, media / "STRAY.dcm")  # not referenced: a File-set Reader leaves it

    data = tmp_path / "data"
    result = pacsnode_cli("import", str(media), "--data-dir", str(data))

    assert result.returncode == 1, result.stdout + result.stderr
    assert outcome(result.stdout, "stored") == 2, result.stdout
    assert outcome(result.stdout, "failed") == 1, result.stdout
    assert "missing from the file-set" in result.stdout
    archive = Archive(Settings(data_dir=data))
    try:
        assert archive.index.find_instance(str(gone.SOPInstanceUID)) is None
        assert archive.index.find_instance(str(stray.SOPInstanceUID)) is None
    finally:
        archive.close()


@pytest.mark.parametrize("profile", ["STD-GEN-DVD-JPEG"])
def test_jpeg_profile_keeps_jpeg(
    server_factory: ServerFactory, tmp_path: Path, profile: str
) -> None:
    server = server_factory()
    jpeg = Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert all(s is not None and s.Status == 0 for s in send_files(server.port, [jpeg]).values())
    original = dcmread(jpeg)
    out = tmp_path / "dvd"
    result = pacsnode_cli(
        "export-media", "--study", str(original.StudyInstanceUID), "--profile", profile,
        "--config", str(server.config_path), str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "converted" not in result.stdout
    (instance,) = FileSet(dcmread(out / "DICOMDIR"))
    assert instance.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    refused = pacsnode_cli(
        "export-media", "--study", str(original.StudyInstanceUID), "--update",
        "--config", str(server.config_path), str(out),
    )  # fmt: skip
    assert refused.returncode == 2  # STD-GEN-CD cannot hold the JPEG file already there
    assert "which STD-GEN-CD does not allow" in refused.stdout + refused.stderr


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def reference(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return item


def complete_ct(study: str, number: int, **attributes: Any) -> Dataset:
    """A CT image that dciodvfy finds no error in."""
    return ct_dataset(
        study=study, SeriesNumber=1, InstanceNumber=number, StudyID="1", PatientBirthDate="",
        PatientSex="", ReferringPhysicianName="", Laterality="", PatientPosition="HFS",
        FrameOfReferenceUID=generate_uid(), PositionReferenceIndicator="", Manufacturer="",
        PixelSpacing=[0.5, 0.5], ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        ImagePositionPatient=[0, 0, number], SliceThickness=1, KVP="", AcquisitionNumber="",
        ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], RescaleIntercept=0, RescaleSlope=1,
        **attributes,
    )  # fmt: skip


def non_image(like: Dataset, sop_class: str, modality: str, number: int, **kw: Any) -> Dataset:
    """A new series of the study of ``like`` holding one object of ``sop_class``."""
    ds = Dataset()
    for keyword in ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate",
                    "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
                    "AccessionNumber", "StudyID", "ReferringPhysicianName"):  # fmt: skip
        if keyword in like:
            setattr(ds, keyword, like[keyword].value)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = generate_uid(), modality, number
    ds.InstanceNumber, ds.Manufacturer, ds.Laterality = 1, "", ""
    ds.ContentDate, ds.ContentTime = "20260115", f"1020{number:02}"
    for keyword, value in kw.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def mixed_study(ct: Dataset) -> list[Dataset]:
    """An SR, a KOS, a presentation state, an encapsulated PDF and Raw Data on ``ct``."""
    container = {"ValueType": "CONTAINER", "ContinuityOfContent": "SEPARATE"}
    sr = non_image(ct, BasicTextSRStorage, "SR", 2, CompletionFlag="COMPLETE",
                   VerificationFlag="UNVERIFIED", **container)  # fmt: skip
    sr.ConceptNameCodeSequence = [code("18748-4", "LN", "Diagnostic Imaging Report")]
    finding = Dataset()
    finding.RelationshipType, finding.ValueType, finding.TextValue = "CONTAINS", "TEXT", "Normal."
    finding.ConceptNameCodeSequence = [code("121071", "DCM", "Finding")]
    sr.ContentSequence = [finding]
    sr.ReferencedPerformedProcedureStepSequence = sr.PerformedProcedureCodeSequence = []

    kos = non_image(ct, KeyObjectSelectionDocumentStorage, "KO", 3, **container)
    kos.ConceptNameCodeSequence = [code("113000", "DCM", "Of Interest")]
    template = Dataset()
    template.TemplateIdentifier, template.MappingResource = "2010", "DCMR"
    kos.ContentTemplateSequence = [template]
    evidence_series = Dataset()
    evidence_series.SeriesInstanceUID = ct.SeriesInstanceUID
    evidence_series.ReferencedSOPSequence = [reference(ct)]
    evidence = Dataset()
    evidence.StudyInstanceUID, evidence.ReferencedSeriesSequence = (
        ct.StudyInstanceUID,
        [evidence_series],
    )
    kos.CurrentRequestedProcedureEvidenceSequence = [evidence]
    image = Dataset()
    image.RelationshipType, image.ValueType = "CONTAINS", "IMAGE"
    image.ReferencedSOPSequence = [reference(ct)]
    kos.ContentSequence = [image]
    kos.ReferencedPerformedProcedureStepSequence = []

    pr = non_image(ct, GrayscaleSoftcopyPresentationStateStorage, "PR", 4, ContentLabel="PR1",
                   ContentDescription="", ContentCreatorName="", PresentationLUTShape="IDENTITY",
                   PresentationCreationDate="20260115",
                   PresentationCreationTime="102200")  # fmt: skip
    shown = Dataset()
    shown.SeriesInstanceUID, shown.ReferencedImageSequence = ct.SeriesInstanceUID, [reference(ct)]
    pr.ReferencedSeriesSequence = [shown]
    area = Dataset()
    area.ReferencedImageSequence = [reference(ct)]
    area.DisplayedAreaTopLeftHandCorner, area.DisplayedAreaBottomRightHandCorner = [1, 1], [16, 16]
    area.PresentationSizeMode, area.PresentationPixelAspectRatio = "SCALE TO FIT", [1, 1]
    pr.DisplayedAreaSelectionSequence = [area]

    body = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    pdf = non_image(ct, EncapsulatedPDFStorage, "DOC", 5, DocumentTitle="Report",
                    AcquisitionDateTime="20260115102300", BurnedInAnnotation="YES",
                    MIMETypeOfEncapsulatedDocument="application/pdf", ConversionType="WSD",
                    EncapsulatedDocument=body + b"\0" * (len(body) % 2),
                    EncapsulatedDocumentLength=len(body))  # fmt: skip
    pdf.ConceptNameCodeSequence = []

    raw = non_image(ct, RawDataStorage, "OT", 6, AcquisitionDateTime="20260115102400",
                    CreatorVersionUID=generate_uid())  # fmt: skip
    raw.AcquisitionContextSequence = []
    raw.private_block(0x0099, "PACSNODE TEST", create=True).add_new(0x00, "OB", b"raw data")
    return [sr, kos, pr, pdf, raw]


RECORD_TYPES = {
    CTImageStorage: "IMAGE",
    BasicTextSRStorage: "SR DOCUMENT",
    KeyObjectSelectionDocumentStorage: "KEY OBJECT DOC",
    GrayscaleSoftcopyPresentationStateStorage: "PRESENTATION",
    EncapsulatedPDFStorage: "ENCAP DOC",
    RawDataStorage: "RAW DATA",
}
# The Type 1 and 2 keys of each record type besides the references (PS3.3 F.5).
RECORD_KEYS = {
    "IMAGE": ["InstanceNumber"],
    "SR DOCUMENT": [
        "InstanceNumber",
        "CompletionFlag",
        "VerificationFlag",
        "ContentDate",
        "ContentTime",
        "ConceptNameCodeSequence",
    ],
    "KEY OBJECT DOC": ["InstanceNumber", "ContentDate", "ContentTime", "ConceptNameCodeSequence"],
    "PRESENTATION": [
        "InstanceNumber",
        "ContentLabel",
        "ContentDescription",
        "PresentationCreationDate",
        "PresentationCreationTime",
        "ContentCreatorName",
        "ReferencedSeriesSequence",
    ],
    "ENCAP DOC": [
        "InstanceNumber",
        "ContentDate",
        "ContentTime",
        "DocumentTitle",
        "MIMETypeOfEncapsulatedDocument",
        "ConceptNameCodeSequence",
    ],
    "RAW DATA": ["InstanceNumber", "ContentDate", "ContentTime"],
}


def errors(tool: str, *files: Path) -> list[str]:
    """The lines a dicom3tools validator flags as errors."""
    checked = dcmtk(tool, *map(str, files))
    return [line for line in (checked.stdout + checked.stderr).splitlines() if "Error" in line]


def test_update_adds_a_mixed_study(tmp_path: Path) -> None:
    """Study A exported, then study B (CT, SR, KOS, PR, PDF, Raw Data) added to the
    same file-set: every record type and key right, dicom3tools and DCMTK content."""
    study_a, series_a = generate_uid(), generate_uid()
    first = [complete_ct(study_a, n, series=series_a) for n in (1, 2)]
    ct = complete_ct(generate_uid(), 1, patient_id="PAT002", patient_name="Röe^Jane")
    ct.SpecificCharacterSet, ct.StudyID = "ISO_IR 100", ""  # records made with invented keys
    second = [ct, *mixed_study(ct)]
    sources = tmp_path / "sources"
    sources.mkdir()
    for ds in [*first, *second]:
        save(ds, sources / f"{ds.SOPInstanceUID}.dcm")
    data = tmp_path / "data"
    assert pacsnode_cli("import", str(sources), "--data-dir", str(data)).returncode == 0
    study_b = str(ct.StudyInstanceUID)
    out = tmp_path / "usb"

    created = pacsnode_cli(
        "export-media", "--study", study_a, "--fileset-id", "CASE42", "--pdi",
        "--data-dir", str(data), str(out),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    file_ids = {i.SOPInstanceUID: i.FileID for i in FileSet(dcmread(out / "DICOMDIR"))}
    again = pacsnode_cli("export-media", "--study", study_b, "--data-dir", str(data), str(out))
    assert again.returncode == 2 and "already holds a file-set" in again.stdout + again.stderr
    wrong_id = pacsnode_cli(
        "export-media", "--study", study_b, "--update", "--fileset-id", "OTHER",
        "--data-dir", str(data), str(out),
    )  # fmt: skip
    assert wrong_id.returncode == 2 and "CASE42" in wrong_id.stdout + wrong_id.stderr

    updated = pacsnode_cli(
        "export-media", "--study", study_b, "--study", study_a, "--update",
        "--data-dir", str(data), str(out),
    )  # fmt: skip
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "exported 6 instances" in updated.stdout
    assert "2 instances were in the file-set already" in updated.stdout
    assert "moved" not in updated.stdout
    readme = (out / "README.TXT").read_text(encoding="utf-8")  # IHE PDI, rewritten
    assert "no viewer" in readme
    assert "DOE^JOHN (ID PAT001)" in readme and "Röe^Jane (ID PAT002)" in readme
    assert "2026-01-15, accession ACC001: 6 series, 6 instances" in readme
    assert "Röe^Jane (ID PAT002)" in (out / "INDEX.HTM").read_text(encoding="utf-8")

    fileset = FileSet(dcmread(out / "DICOMDIR"))
    assert fileset.ID == "CASE42"
    assert len(fileset) == 8
    paths = [Path(i.path) for i in fileset]
    assert len(set(paths)) == 8 and all(p.is_file() for p in paths)
    for instance in fileset:
        if instance.SOPInstanceUID in file_ids:  # the first export's files stay where they were
            assert instance.FileID == file_ids[instance.SOPInstanceUID]
        stored = stored_file(data, instance.SOPInstanceUID)
        assert Path(instance.path).read_bytes() == stored.read_bytes()  # as stored, unchanged
    records = dcmread(out / "DICOMDIR").DirectoryRecordSequence
    leaves = [r for r in records if "ReferencedSOPInstanceUIDInFile" in r]
    assert len(leaves) == 8
    for record in leaves:
        kind = RECORD_TYPES[record.ReferencedSOPClassUIDInFile]
        assert record.DirectoryRecordType == kind
        assert all(keyword in record for keyword in RECORD_KEYS[kind]), (kind, record)
        assert "ContentSequence" not in record  # only HAS CONCEPT MOD items may be there

    assert errors("dciodvfy", out / "DICOMDIR") == []
    archive = Archive(Settings(data_dir=data))
    try:  # the DICOMDIR of a WADO-RS ZIP, naming the stored files
        (_, as_zipped), *named = as_stored(
            locate(archive, study_b), tmp_path / "work", archive.outgoing
        )
    finally:
        archive.close()
    assert len(named) == 6 and isinstance(as_zipped, bytes)
    (tmp_path / "DICOMDIR").write_bytes(as_zipped)
    assert errors("dciodvfy", tmp_path / "DICOMDIR") == []
    files = [
        p for p in out.rglob("*") if p.is_file() and "." not in p.name and p.name != "DICOMDIR"
    ]
    assert len(files) == 8
    assert errors("dcentvfy", *files) == []
    assert all(errors("dciodvfy", path) == [] for path in files)
    check = tmp_path / "check"  # DCMTK's File-set Updater reads the DICOMDIR, finds each one
    shutil.copytree(out, check)
    names = [str(path.relative_to(out)) for path in files]
    appended = dcmtk(
        "dcmmkdir", "+A", "+I", "+id", str(check), "+D", str(check / "DICOMDIR"), *names
    )
    said = appended.stdout + appended.stderr
    assert appended.returncode == 0 and "E:" not in said, said
    assert said.count("directory record for this SOP instance already exists") == 8, said
    dumped = dcmtk("dcmdump", "+P", "0004,1430", str(out / "DICOMDIR"))
    assert dumped.returncode == 0, dumped.stderr
    kinds = re.findall(r"\[([A-Z ]+)\]", dumped.stdout)
    assert sorted(kinds) == sorted(
        ["PATIENT"] * 2 + ["STUDY"] * 2 + ["SERIES"] * 7 + [*RECORD_TYPES.values()] + ["IMAGE"] * 2
    )

    fresh = tmp_path / "fresh"
    imported = pacsnode_cli("import", str(out), "--data-dir", str(fresh))
    assert outcome(imported.stdout, "stored") == 8, imported.stdout + imported.stderr
    for ds in [*first, *second]:
        sop = str(ds.SOPInstanceUID)
        assert dataset_bytes(stored_file(fresh, sop)) == dataset_bytes(stored_file(data, sop))


def unzip(response: httpx.Response, into: Path) -> FileSet:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist()[0] == "DICOMDIR"
        archive.extractall(into)
    return FileSet(dcmread(into / "DICOMDIR"))


def test_zip_download_through_the_rest_api(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory()
    study, series = generate_uid(), generate_uid()
    cts = [complete_ct(study, n, series=series) for n in (1, 2)]
    j2k_path = Path(get_testdata_file("JPEG2000.dcm"))
    j2k = dcmread(j2k_path)
    assert send_datasets(server.port, cts) == [0, 0]
    assert all(
        s is not None and s.Status == 0 for s in send_files(server.port, [j2k_path]).values()
    )
    api = httpx.Client(base_url=f"{server.url}/api", timeout=30)

    converted = api.get(f"/studies/{j2k.StudyInstanceUID}/media")  # STD-GEN-CD: ELE only
    assert "1 instances converted" in converted.headers["warning"]
    (instance,) = unzip(converted, tmp_path / "cd")
    assert instance.TransferSyntaxUID == ExplicitVRLittleEndian
    assert errors("dciodvfy", tmp_path / "cd" / "DICOMDIR") == []

    both = api.post(
        "/media",
        json={"studies": [study, str(j2k.StudyInstanceUID)], "profile": "STD-GEN-USB-J2K",
              "fileset_id": "WEB1"},
    )  # fmt: skip
    assert "warning" not in both.headers
    fileset = unzip(both, tmp_path / "usb")
    assert fileset.ID == "WEB1" and len(fileset) == 3
    for instance in fileset:
        stored = stored_file(server.data_dir, instance.SOPInstanceUID)
        assert dataset_bytes(Path(instance.path)) == dataset_bytes(stored)
    one_series = api.post("/media", json={"studies": [study], "series": [series]})
    assert len(unzip(one_series, tmp_path / "series")) == 2

    assert api.get("/studies/1.2.3.4/media").status_code == 404
    assert api.get(f"/studies/{study}/media", params={"profile": "NOPE"}).status_code == 400
    assert api.post("/media", json={"series": [series]}).status_code == 400
    assert api.post("/media", content=b"[").status_code == 400
    spool = server.data_dir / "tmp"  # each download's file-set is gone once it was sent
    deadline = time.monotonic() + 10
    while any(p.is_file() for p in spool.rglob("*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in spool.rglob("*") if p.is_file()] == []
