"""pacsnode: a DICOM archive."""

__version__ = "0.1.0"
