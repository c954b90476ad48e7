"""A file-set as a ZIP stream: what the web doors hand out for download.

The ZIP is written as it is sent, never whole in memory nor on disk: zipfile writes
to an unseekable sink and so emits data descriptors instead of seeking back to fill
in sizes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_CHUNK = 4 << 20


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream that hands over what was written so far."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def zip_stream(entries: Iterable[tuple[str, Path | bytes]]) -> Iterator[bytes]:
    """ZIP the entries, each a name in the ZIP and a file to copy or bytes, uncompressed
    (DICOM pixel data rarely shrinks, and stored entries cost no CPU)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, content in entries:
            with archive.open(name, "w", force_zip64=True) as out:
                if isinstance(content, bytes):
                    out.write(content)
                    continue
                with content.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        yield sink.take()
            yield sink.take()
    yield sink.take()


def tree(root: Path) -> list[tuple[str, Path]]:
    """Every file under ``root`` named by its path from there, the DICOMDIR first."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(root) != Path("DICOMDIR"))
    return [(p.relative_to(root).as_posix(), p) for p in files]
