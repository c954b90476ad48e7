"""Interchange media: DICOM file-sets with a DICOMDIR (PS3.10, PS3.11)."""
