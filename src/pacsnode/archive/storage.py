"""Where instance files live, and how one is written so that a crash never half-writes it.

The archive keeps each instance under a key (the index's ``file_path``) in an
:class:`ObjectStore`: put, open, delete, exists. The filesystem is the one kind there
is; an object store would be a second, behind the same calls.

On the filesystem a file is assembled in a temporary directory, fsynced, then renamed
into ``storage/`` (same filesystem, so the rename is atomic) and the directory is
fsynced. Whatever a crash leaves behind is in the temporary directory only, which
start-up empties. The data set bytes are copied exactly as received; only the File
Meta Information is ours, and it records who sent the object.

A single node keeps both under its data directory (``storage/``, ``tmp/``). The nodes
of a cluster share one storage directory: each has its own temporary directory in it,
``tmp/<node>/``, which only that node's start-up empties, and puts its name in every
file name it makes, so that no two nodes can ever pick the same one.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import struct
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from pydicom.uid import PYDICOM_ROOT_UID

from pacsnode import __version__
from pacsnode.archive.checksums import Checksum

if TYPE_CHECKING:  # the configuration model checks options that import this module
    from pacsnode.config import Settings

IMPLEMENTATION_CLASS_UID = f"{PYDICOM_ROOT_UID}7001.{__version__.split('.')[1]}"
IMPLEMENTATION_VERSION_NAME = f"PACSNODE_{__version__.replace('.', '')}"[:16]
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    relative_path: str
    size: int
    checksum: str
    """Of the whole file (:mod:`~pacsnode.archive.checksums`), checked again before
    storage commitment."""


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str | None
) -> bytes:
    """The encoded preamble, ``DICM`` prefix and File Meta Information group.

    Encoded by hand: it is a fixed handful of Explicit VR Little Endian elements, and
    this runs once per received object, where pydicom's general writer costs a
    millisecond.
    """
    elements = [
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", _uid(sop_class_uid)),
        _element(0x0003, b"UI", _uid(sop_instance_uid)),
        _element(0x0010, b"UI", _uid(transfer_syntax_uid)),
        _element(0x0012, b"UI", _uid(IMPLEMENTATION_CLASS_UID)),
        _element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME)),
    ]
    if source_ae and source_ae.strip():
        elements.append(_element(0x0016, b"AE", _text(source_ae.strip())))
    body = b"".join(elements)
    group_length = _element(0x0000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + group_length + body


def _uid(value: str) -> bytes:
    encoded = value.encode("ascii")
    return encoded + b"\x00" if len(encoded) % 2 else encoded


def _text(value: str) -> bytes:
    encoded = value.encode("ascii", "replace")
    return encoded + b" " if len(encoded) % 2 else encoded


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


class ObjectStore(Protocol):
    """What the archive asks of the place its instance files are kept, by key."""

    def put(self, key: str, header: bytes, source: BinaryIO) -> StoredFile:
        """Store ``header`` then the rest of ``source`` durably under ``key``."""
        ...

    def sync_and_close(self, fd: int) -> Future[None]:
        """Begin writing a spooled file to the disk as soon as its last byte is in;
        takes the descriptor over and closes it."""
        ...

    def put_file(self, path: Path, key: str, synced: Future[None] | None = None) -> Future[None]:
        """Store a complete file received into this node's spool under ``key``, in the
        background (the index commits once it is done); ``synced`` is its
        :meth:`sync_and_close`, if it had one."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The stored bytes, for reading."""
        ...

    def delete(self, key: str) -> None:
        """Remove what is stored under ``key``; nothing there is no error."""
        ...

    def exists(self, key: str) -> bool: ...

    def absolute(self, key: str) -> Path:
        """A local file holding the object, for readers that need a file name (pydicom,
        a memory map, an HTTP file response): the stored file itself here; an object
        store would give a cached copy."""
        ...


class Storage:
    """The filesystem :class:`ObjectStore`: ``storage/`` under ``root``, and the node's
    temporary directory beside it."""

    def __init__(self, root: Path, node: str = "") -> None:
        self.root = root / "storage"
        self.tmp = root / "tmp" / node if node else root / "tmp"
        self.node = node
        """This node's name in a cluster (part of every file name it makes), else empty."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="storage-io")

    @classmethod
    def of(cls, settings: Settings) -> Storage:
        """The storage these settings name: a cluster's shared one, or the data
        directory's."""
        node = settings.cluster.node if settings.cluster is not None else ""
        return cls(settings.storage_dir, node)

    def clean_partial_files(self) -> int:
        """Remove what an interrupted write or receive of this node left behind; returns
        how many. Other nodes' temporary files are theirs, in flight or not."""
        removed = 0
        for entry in self.tmp.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        return removed

    def spool_dir(self) -> Path:
        """Where this process spools incoming data sets before ingest: a directory of
        its own, so that cleaning up after one process never touches another's files.
        It is made as the process starts serving (after the node's clean-up)."""
        return self.tmp / f"spool-{os.getpid()}"

    def clean_spool_of(self, pid: int) -> None:
        """Remove what a process of this node that died left in its spool directory."""
        shutil.rmtree(self.tmp / f"spool-{pid}", ignore_errors=True)

    def new_relative_path(self, study_instance_uid: str, sop_instance_uid: str) -> str:
        """A fresh key for a new copy of an instance, in its study's directory.

        One directory per study keeps a study together on disk and costs one
        directory creation per study, not per instance. Each write gets its own file
        name (a cluster node's name in it, then random), so a replacement or a
        concurrent duplicate, here or on another node, never overwrites the file that
        an index row (and its checksum) points to.
        """
        study = _digest(study_instance_uid)
        unique = f"{self.node}-{secrets.token_hex(4)}" if self.node else secrets.token_hex(4)
        return f"{study[:2]}/{study[2:20]}/{_digest(sop_instance_uid)}.{unique}.dcm"

    def absolute(self, relative_path: str) -> Path:
        return self.root / relative_path

    def open(self, key: str) -> BinaryIO:
        return self.absolute(key).open("rb")

    def exists(self, key: str) -> bool:
        return self.absolute(key).is_file()

    def sync_and_close(self, fd: int) -> Future[None]:
        """Begin writing a spooled file to the disk as soon as its last byte is in,
        while it is parsed and its rows are built; :meth:`put_file` waits for it.
        Takes the descriptor over and closes it."""
        return self._io.submit(_sync_and_close, fd)

    def put_file(self, path: Path, key: str, synced: Future[None] | None = None) -> Future[None]:
        """Make a complete file (spooled on this filesystem) durable under ``key``;
        ``synced`` is its :meth:`sync_and_close`, waited for instead of syncing again.

        Runs on an I/O thread: the fsyncs overlap with the caller's index work.
        """
        return self._io.submit(self._adopt, path, key, synced)

    def _adopt(self, path: Path, relative_path: str, synced: Future[None] | None) -> None:
        if synced is not None:
            synced.result()  # raises the fsync's OSError
        else:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._move_into_place(path, self.absolute(relative_path))

    def put(self, relative_path: str, header: bytes, source: BinaryIO) -> StoredFile:
        """Write ``header`` then the rest of ``source`` durably at ``relative_path``."""
        final = self.absolute(relative_path)
        checksum = Checksum(header)
        size = len(header)
        fd, partial = tempfile.mkstemp(dir=self.tmp, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header)
                while chunk := source.read(_CHUNK):
                    checksum.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            self._move_into_place(Path(partial), final)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return StoredFile(relative_path, size, checksum.text())

    def delete(self, relative_path: str) -> None:
        self.absolute(relative_path).unlink(missing_ok=True)

    @staticmethod
    def _move_into_place(synced: Path, final: Path) -> None:
        """Rename a synced file to its final name, and make the rename durable too."""
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(final.parent.parent)
            _fsync_dir(final.parent.parent.parent)
        os.replace(synced, final)
        _fsync_dir(final.parent)


def _digest(uid: str) -> str:
    return hashlib.sha1(uid.encode("ascii", "replace")).hexdigest()


def _sync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
