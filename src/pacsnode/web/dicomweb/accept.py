"""Reading the Accept header (RFC 9110 §12.5.1) with PS3.18's ``type`` and
``transfer-syntax`` parameters, and the ``accept`` query parameter that overrides it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from starlette.requests import Request


@dataclass(frozen=True)
class MediaRange:
    media_type: str
    """Lower-cased ``type/subtype``; may contain ``*``."""
    parameters: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    def matches(self, media_type: str) -> bool:
        wanted_type, _, wanted_sub = self.media_type.partition("/")
        offered_type, _, offered_sub = media_type.lower().partition("/")
        return wanted_type in ("*", offered_type) and wanted_sub in ("*", offered_sub)

    @property
    def part_type(self) -> str | None:
        """For ``multipart/related``, the media type of its parts."""
        value = self.parameters.get("type")
        return value.lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        return self.parameters.get("transfer-syntax")


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return [piece.strip() for piece in pieces if piece.strip()]


def parse_media_range(text: str) -> MediaRange:
    """One media range; ValueError if it is not ``type/subtype`` with parameters."""
    media_type, *raw = _split(text, ";") or [""]
    if "/" not in media_type:
        raise ValueError(f"{text!r} is not a media type")
    parameters: dict[str, str] = {}
    quality = 1.0
    for item in raw:
        name, _, value = item.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        else:
            parameters[name] = value
    return MediaRange(media_type.strip().lower(), parameters, quality)


def accepted(request: Request) -> list[MediaRange]:
    """What the client accepts, best first; ``*/*`` when it says nothing.

    The ``accept`` query parameter (PS3.18 §8.3.3.1) replaces the header.
    """
    texts = request.query_params.getlist("accept") or [request.headers.get("accept", "*/*")]
    ranges = []
    for item in (item for text in texts for item in _split(text, ",")):
        with contextlib.suppress(ValueError):  # a malformed entry is skipped, not fatal
            ranges.append(parse_media_range(item))
    ranges = [media for media in ranges if media.quality > 0]
    return sorted(ranges, key=lambda media: -media.quality) or [MediaRange("*/*")]
