"""The pydicom this archive is built against, checked before anything is served.

pacsnode reads and writes data sets with pydicom's public reader and writer functions
and its data dictionary; they are pinned to one release in pyproject.toml. Another
release that lacks one of them would fail on the first object received, so the server
refuses to start instead, with one line saying what is missing.
"""

from __future__ import annotations

import importlib

import pydicom

PYDICOM_VERSION = "3.0.2"
USED = {
    "pydicom.filereader": ("read_dataset", "dcmread", "read_preamble"),
    "pydicom.filewriter": ("write_dataset", "write_data_element", "correct_ambiguous_vr_element"),
    "pydicom.filebase": ("DicomBytesIO",),
    "pydicom.datadict": ("dictionary_VR", "add_private_dict_entries", "tag_for_keyword"),
    "pydicom.dataset": ("Dataset", "FileDataset", "FileMetaDataset"),
}


class MissingDependency(RuntimeError):
    pass


def check() -> None:
    """Raise :class:`MissingDependency` naming what is not as pinned."""
    if pydicom.__version__ != PYDICOM_VERSION:
        raise MissingDependency(
            f"pydicom {PYDICOM_VERSION} is required, {pydicom.__version__} is installed "
            f"(pip install pydicom=={PYDICOM_VERSION})"
        )
    for module_name, names in USED.items():
        module = importlib.import_module(module_name)
        missing = [name for name in names if not hasattr(module, name)]
        if missing:
            raise MissingDependency(f"{module_name} has no {', '.join(missing)}")
