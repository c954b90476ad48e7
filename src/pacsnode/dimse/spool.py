"""Spool files that receive C-STORE data sets straight into the archive's file format.

pynetdicom writes each received data set to a temporary file (memory stays flat for
any size). Our spool file stands in for that temporary file and does two things more:

* It writes our File Meta Information (source AE title, our implementation UID)
  instead of pynetdicom's, and hashes the bytes as they arrive, so that ingest only
  has to fsync and rename the file into storage: no second copy of the data, and no
  File Meta built and parsed with pydicom's general (slow) writer and reader.
* A write error (a full disk) is recorded instead of raised. Raised, it would abort
  the whole association; recorded, the C-STORE handler answers ``A700`` and the
  association goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import dimse_messages

from pacsnode.archive.storage import file_meta
from pacsnode.dimse import reactor

_spooled: dict[str, SpoolFile] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class _MetaRequest:
    """What pynetdicom asks ``create_file_meta`` for, kept as plain strings."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


class SpoolFile:
    """The part of ``NamedTemporaryFile`` that pynetdicom uses.

    pynetdicom writes a preamble, then File Meta through ``write_file_meta_info``
    (which :func:`install` routes to :meth:`write_header`), then each data set
    fragment.
    """

    def __init__(self, directory: Path, source_ae: str | None) -> None:
        fd, self.name = tempfile.mkstemp(dir=directory, suffix=".dcm")
        self.file = self
        self.source_ae = source_ae
        self.error: OSError | None = None
        self.dataset_offset: int | None = None
        self.size = 0
        self._handle = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        with _lock:
            _spooled[self.name] = self

    @property
    def checksum(self) -> str:
        return self._digest.hexdigest()

    def write(self, data: bytes) -> int:
        if self.dataset_offset is not None:  # pynetdicom's own preamble is dropped
            self._write(data)
        return len(data)

    def write_header(self, request: _MetaRequest) -> None:
        header = file_meta(
            request.sop_class_uid,
            request.sop_instance_uid,
            request.transfer_syntax,
            self.source_ae,
        )
        self._write(header)
        self.dataset_offset = len(header)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._handle.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        with _lock:
            _spooled.pop(self.name, None)
        with contextlib.suppress(OSError):
            self._handle.close()

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self._handle.write(data)
        except OSError as exc:
            self._fail(exc)
            return
        self._digest.update(data)
        self.size += len(data)

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        with contextlib.suppress(OSError):  # give the space back; the data is lost
            self._handle.truncate(0)


def install(directory: Path) -> None:
    """Make pynetdicom spool received data sets into ``directory`` through our files."""

    def factory(*_args: Any, **_kwargs: Any) -> SpoolFile:
        assoc = reactor.current_association()
        calling_ae = assoc.requestor.ae_title if assoc is not None else None
        return SpoolFile(directory, calling_ae)

    def write_file_meta_info(spool: SpoolFile, request: _MetaRequest) -> None:
        spool.write_header(request)

    dimse_messages.NamedTemporaryFile = factory  # type: ignore[assignment]
    dimse_messages.create_file_meta = _MetaRequest  # type: ignore[assignment]
    dimse_messages.write_file_meta_info = write_file_meta_info  # type: ignore[assignment]


def spooled(path: Path | str) -> SpoolFile | None:
    """The spool file pynetdicom is handing to a C-STORE handler."""
    with _lock:
        return _spooled.get(str(path))
