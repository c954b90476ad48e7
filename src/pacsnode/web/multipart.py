"""multipart/related responses (RFC 2387), as WADO-RS and rendered resources send them.

Parts are written as they are produced, and file parts are read in chunks, so a
500 MB study streams through a small buffer.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_CHUNK = 4 << 20


@dataclass(frozen=True)
class Part:
    content_type: str
    body: bytes | Path
    """The part's bytes, or a file whose whole content is the part."""
    headers: dict[str, str] = field(default_factory=dict)


def new_boundary() -> str:
    return secrets.token_hex(16)


def content_type(part_type: str, boundary: str, **parameters: str) -> str:
    """The response's Content-Type: ``multipart/related; type="…"; boundary=…``."""
    extra = "".join(f"; {name.replace('_', '-')}={value}" for name, value in parameters.items())
    return f'multipart/related; type="{part_type}"{extra}; boundary={boundary}'


def stream(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body in chunks of about 4 MiB; parts may be computed lazily.

    Each chunk costs the server a thread-pool hop and a socket write, so a part's
    headers, its bytes and the next delimiter go out together: three small writes a
    part halved WADO-RS throughput.
    """
    pending: list[bytes] = []
    size = 0
    for piece in _pieces(parts, boundary):
        pending.append(piece)
        size += len(piece)
        if size >= _CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    yield b"".join(pending)


def _pieces(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    delimiter = f"--{boundary}\r\n".encode()
    for part in parts:
        headers = {"Content-Type": part.content_type, **part.headers}
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        yield delimiter + head.encode("latin-1") + b"\r\n"
        if isinstance(part.body, Path):
            with part.body.open("rb") as source:
                while chunk := source.read(_CHUNK):
                    yield chunk
        else:
            yield part.body
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()
