"""DICOMDIR media: ``pacsnode export-media`` as File-set Creator and ``pacsnode import``
of a file-set as File-set Reader, checked with pydicom, DCMTK and a full round trip."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerFactory, ct_dataset, dataset_bytes, save
from peers import dcmtk, pacsnode_cli, send_files
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, generate_uid

from pacsnode.archive.core import Archive
from pacsnode.config import Settings

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
    statuses = send_files(server.port, [*sources, j2k])
    assert all(s is not None and s.Status == 0 for s in statuses.values())
    j2k_study = str(dcmread(j2k).StudyInstanceUID)
    j2k_sop = str(dcmread(j2k).SOPInstanceUID)

    out = tmp_path / "cd"
    exported = pacsnode_cli(
        "export-media", "--study", study, "--study", j2k_study,
        "--config", str(server.config_path), str(out),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "exported 4 instances" in exported.stdout
    assert f"converted {j2k_sop}" in exported.stdout

    # pydicom's File-set Reader sees the four instances, all in Explicit VR Little Endian.
    fileset = FileSet(dcmread(out / "DICOMDIR"))
    assert fileset.ID == "PACSNODE"
    assert len(fileset) == 4
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
    if shutil.which("dcmgpdir"):  # DCMTK's STD-GEN-CD creator accepts every file we wrote
        names = [str(f) for f in files if f.name != "DICOMDIR"]
        again = dcmtk("dcmgpdir", "+I", "+id", str(out), "+D", str(tmp_path / "CHECK"), *names)
        said = again.stdout + again.stderr
        assert again.returncode == 0 and "E:" not in said and "cannot be added" not in said, said
    for tool in ("dciodvfy", "dcentvfy"):  # dicom3tools, when installed
        if shutil.which(tool):
            checked = dcmtk(tool, str(out / "DICOMDIR"))
            assert "Error" not in checked.stdout + checked.stderr, checked.stderr

    fresh = tmp_path / "fresh"
    imported = pacsnode_cli("import", str(out), "--data-dir", str(fresh))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert outcome(imported.stdout, "stored") == 4, imported.stdout
    for source in sources:
        sop = str(dcmread(source).SOPInstanceUID)
        original = stored_file(server.data_dir, sop)
        assert dataset_bytes(stored_file(fresh, sop)) == dataset_bytes(original)
    back = dcmread(stored_file(fresh, j2k_sop))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, dcmread(j2k).pixel_array)


def test_export_refuses_unknown_profile(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory(start=False)
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
