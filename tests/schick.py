"""Objects shaped like Schick CDRClient's (digest-000_004 B5, Appendix A of its statement).

A Digital Intra-oral X-Ray image with every quirk the statement shows: UIDs with a
leading-zero component, zero-length type 2 values and sequences, padded values, a
reference to a retired SOP class, and the private viewset, change list, note list
and image checksum blocks, with their item creators inside the sequence items. An
unknown vendor's private sequence, three levels deep, stands for the creators no
dictionary knows.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

SCHICK = "SCHICK TECHNOLOGIES - "
SOP_INSTANCE = "1.2.840.114244.030.4.337057497.868863780.4817"
STUDY = "1.2.840.114244.030.2.337057497.868863780.4815"
SERIES = "1.2.840.114244.030.3.337057497.868863780.4816"
IO_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.3"


def schick_image(
    *, undefined_lengths: bool = False, instance: str = SOP_INSTANCE, rows: int = 24
) -> Dataset:
    """The Appendix A image; ``undefined_lengths`` writes every sequence and item
    with delimiters instead of lengths."""
    ds = Dataset()  # no Specific Character Set, as the statement's objects
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = IO_FOR_PRESENTATION
    ds.SOPInstanceUID = instance
    ds.StudyDate = "20050610"
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.Modality = "IO"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "Schick Technologies, Inc."
    ds.InstitutionName = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "LISA'S FMX"
    ds.AnatomicRegionSequence = Sequence()
    ds.ReferencedPatientSequence = Sequence([_reference("1.2.840.10008.3.1.2.1.1")])
    ds.PatientName = "FMX^SERIES2 "
    ds.PatientID = "040-00-0007 "
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.DetectorDescription = "APS SENSOR"
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.StudyID = "FMXSERIE.001"
    ds.SeriesNumber = "0 "
    ds.InstanceNumber = "8 "
    ds.StudyComments = "Series 1"
    ds.AcquisitionContextSequence = Sequence()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.Rows = rows
    ds.Columns = rows + 8
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PresentationLUTShape = "INVERSE"
    _add_viewset(ds)
    _add_change_and_note_lists(ds)
    ds.add_new(0x00291010, "LO", SCHICK + "Image Security Creator ID")
    ds.add_new(0x00291001, "UL", 0x4B788093)  # an orphan: its creator is not at 0029,0010
    _add_unknown_vendor(ds)
    ds.PixelData = bytes((x * 7) % 256 for x in range(rows * (rows + 8)))
    if undefined_lengths:
        _undefine_lengths(ds)
    return ds


def write(ds: Dataset, path: Path, syntax: str = ImplicitVRLittleEndian) -> Path:
    """As CDRClient sends it: Implicit VR Little Endian unless told otherwise."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def schick_files(folder: Path) -> list[Path]:
    """The image in Implicit and Explicit VR, with defined and undefined lengths: four
    instances of one series."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for undefined in (False, True):
        for syntax, name in ((ImplicitVRLittleEndian, "ile"), (ExplicitVRLittleEndian, "ele")):
            kind = "undefined" if undefined else "defined"
            path = folder / f"schick-{name}-{kind}.dcm"
            instance = f"{SOP_INSTANCE}.{len(files) + 1}"
            image = schick_image(undefined_lengths=undefined, instance=instance)
            files.append(write(image, path, syntax))
    return files


def _reference(sop_class: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = "1.2.840.114244.030.0.337057497.868863780.4814"
    return item


def _add_viewset(ds: Dataset) -> None:
    block = ds.private_block(0x0009, SCHICK + "Viewset Creator ID", create=True)
    block.add_new(0x01, "UI", SOP_INSTANCE)
    block.add_new(0x02, "LO", "FMX 18")
    items = []
    for number in range(1, 4):
        item = Dataset()
        inner = item.private_block(0x0009, SCHICK + "Viewset Item Creator ID", create=True)
        inner.add_new(0x01, "UI", SOP_INSTANCE if number == 1 else "")
        inner.add_new(0x02, "US", number)
        inner.add_new(0x03, "US", 4 - number)
        inner.add_new(0x04, "US", number)
        inner.add_new(0x05, "US", number % 2)
        inner.add_new(0x06, "US", [10 * number, 20, 300, 200])
        inner.add_new(0x07, "US", 18)
        inner.add_new(0x08, "US", 1)
        inner.add_new(0x09, "US", 300)
        inner.add_new(0x0A, "US", 200)
        items.append(item)
    block.add_new(0x03, "SQ", Sequence(items))
    block.add_new(0x04, "UL", 2)
    block.add_new(0x05, "UL", 0)


def _add_change_and_note_lists(ds: Dataset) -> None:
    changes = ds.private_block(0x0021, SCHICK + "Change List Creator ID", create=True)
    changes.add_new(0x01, "UI", SOP_INSTANCE)
    change = Dataset()
    inner = change.private_block(0x0021, SCHICK + "Change Item Creator ID", create=True)
    inner.add_new(0x01, "UI", "1.2.840.114244.030.9.1")
    inner.add_new(0x02, "US", 7)
    inner.add_new(0x03, "DT", "20050610101500")
    inner.add_new(0x04, "PN", "HYGIENIST^ANN")
    inner.add_new(0x05, "OB", bytes(range(1, 12)))
    changes.add_new(0x02, "SQ", Sequence([change]))
    notes = ds.private_block(0x0021, SCHICK + "Note Item Creator ID", create=True)
    notes.add_new(0x01, "UI", SOP_INSTANCE)
    note = Dataset()
    inner = note.private_block(0x0021, SCHICK + "Note Item Creator ID", create=True)
    inner.add_new(0x01, "ST", "caries distal 36")
    inner.add_new(0x02, "DT", "20050610")
    inner.add_new(0x03, "PN", "DENTIST^DAN")
    inner.add_new(0x04, "US", [120, 340])
    notes.add_new(0x02, "SQ", Sequence([note]))


def _add_unknown_vendor(ds: Dataset) -> None:
    """A private sequence nobody documents, holding another one, holding values."""
    innermost = Dataset()
    deep = innermost.private_block(0x0041, "ACME IMAGING 1.0", create=True)
    deep.add_new(0x01, "US", [1, 2, 3])
    deep.add_new(0x02, "LO", "deepest")
    middle = Dataset()
    block = middle.private_block(0x0041, "ACME IMAGING 1.0", create=True)
    block.add_new(0x03, "FD", 2.5)
    block.add_new(0x04, "SQ", Sequence([innermost]))
    middle.CodeValue = "T-11170"
    top = ds.private_block(0x0041, "ACME IMAGING 1.0", create=True)
    top.add_new(0x05, "SQ", Sequence([middle]))


def _undefine_lengths(ds: Dataset) -> None:
    for element in ds:
        if element.VR == "SQ":
            element.is_undefined_length = True
            for item in element.value:
                item.is_undefined_length_sequence_item = True
                _undefine_lengths(item)
