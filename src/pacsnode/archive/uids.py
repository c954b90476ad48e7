"""The storage SOP classes and transfer syntaxes the archive accepts.

The standard classes come from pydicom's UID dictionary (the current standard,
retired classes included) joined with pynetdicom's list; the private classes are
those of syngo.share's conformance statement (digest-003 §2.2), which real
archives receive from Agfa, Varian, GE, Siemens and Philips equipment.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import UID_dictionary
from pynetdicom import sop_class

UNCOMPRESSED_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
)

STORAGE_TRANSFER_SYNTAXES = (
    *UNCOMPRESSED_TRANSFER_SYNTAXES,
    "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Lossless Only
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1",
    "1.2.840.10008.1.2.4.101",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10 Profile / Level 5.1
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.4.201",  # High-Throughput JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.202",  # High-Throughput JPEG 2000 with RPCL Lossless Only
    "1.2.840.10008.1.2.4.203",  # High-Throughput JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

PRIVATE_STORAGE_SOP_CLASSES = (
    "1.2.124.113532.3500.7",  # Agfa Basic Attribute Presentation State
    "1.2.246.352.70.1.40",  # Varian Motion Management Protocol
    "1.2.246.352.70.1.41",  # Varian Motion Management Waveform
    "1.2.246.352.70.1.70",  # Varian RT Plan
    "1.2.246.352.70.1.71",  # Varian RT Treatment Record
    "1.2.840.113619.4.26",  # GE Private 3D Model
    "1.2.840.113619.4.30",  # GE Private PET Raw Data
    "1.3.12.2.1107.5.9.1",  # Siemens CSA Non-Image
    "1.3.12.2.1107.5.99.3.10",  # Siemens CT MR Volume
    "1.3.12.2.1107.5.99.3.11",  # Siemens AX Frame Sets
    "1.3.46.670589.2.5.1.1",  # Philips Private 3D Presentation State
    "1.3.46.670589.5.0.13",  # Philips Private Perfusion
    "1.3.46.670589.5.0.14",  # Philips Private Perfusion Analysis
    "1.3.46.670589.11.0.0.12.1",  # Philips Private MR Spectrum
    "1.3.46.670589.11.0.0.12.2",  # Philips Private MR Series Data
    "1.3.46.670589.11.0.0.12.4",  # Philips Private MR Examcard Data
)

# Standard classes newer than pydicom's dictionary (DICONDE thermography, 2024).
NEWER_STORAGE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.601.3",  # Thermography Image Storage
    "1.2.840.10008.5.1.4.1.1.601.4",  # Thermography Multi-frame Image Storage
)

_NOT_STORAGE = ("Commitment", "Media Storage", "Storage Management")


def _standard_storage_classes() -> set[str]:
    from_pydicom = {
        uid
        for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class"
        and "Storage" in name
        and not any(word in name for word in _NOT_STORAGE)
    }
    from_pynetdicom = {str(uid) for uid in sop_class._STORAGE_CLASSES.values()}
    return from_pydicom | from_pynetdicom


STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    sorted(
        _standard_storage_classes()
        | set(NEWER_STORAGE_SOP_CLASSES)
        | set(PRIVATE_STORAGE_SOP_CLASSES)
    )
)

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


_ENCODING_TO_SYNTAX = {
    (True, True): "1.2.840.10008.1.2",
    (False, True): "1.2.840.10008.1.2.1",
    (False, False): "1.2.840.10008.1.2.2",
}


def syntax_of_encoding(dataset: Dataset) -> str:
    """The uncompressed transfer syntax a data set without File Meta was read in."""
    implicit, little = dataset.original_encoding
    return _ENCODING_TO_SYNTAX[(bool(implicit), bool(little))]
