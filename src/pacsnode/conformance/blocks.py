"""The blocks a conformance statement is laid out in: sections holding paragraphs,
bullet lists, tables and subsections, which the renderers number and write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pacsnode.conformance.model import Setting, Uid


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass
class Section:
    title: str
    blocks: Sequence[Block] = field(default_factory=list)


Block = str | Table | Bullets | Section


def yes(flag: bool) -> str:
    return "Yes" if flag else "No"


def uid_text(uid: Uid) -> str:
    return f"{uid.name} ({uid.uid})"


def names(uids: Iterable[Uid]) -> str:
    return ", ".join(uid.name for uid in uids)


def settings_table(settings: Sequence[Setting]) -> Table:
    return Table(("setting", "value", "meaning"), [(x.name, x.value, x.meaning) for x in settings])
