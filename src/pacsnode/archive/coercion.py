"""Attribute coercion: what the configuration changes in objects from or to remote AEs.

``[[coercion]]`` rules copy, set, prefix, map and remove top-level attributes, for the
objects some AEs send (``direction = "receive"``) or are sent (``"send"``); a receive
rule may also give a Specific Character Set to senders that omit it or declare it
wrongly. With ``country = "FR"`` every object loses Ethnic Group and Patient Religious
Preference before it is stored (digest-003 items 25-26), their values recorded nowhere.
With ``check_character_set`` on, a data set whose Specific Character Set is unknown or
does not decode its top-level text is refused (C000), unless a rule sets one for its
sender (items 22-24).

On receipt the coerced object is what is stored (see :mod:`pacsnode.archive.ingest`);
on the way out the outgoing step applies send rules to the copy it sends. Either way
the values replaced go into Original Attributes Sequence, with the reason COERCE.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.uid import ExplicitVRLittleEndian

from pacsnode.archive.encoding import Encoding, reencode
from pacsnode.archive.modification import (
    CHARSET_VRS,
    Change,
    Modification,
    Reason,
    element_for,
    vr_of,
)
from pacsnode.archive.transcoding import writable
from pacsnode.config import Coercion, Settings

FRENCH_CLEARED = ("EthnicGroup", "PatientReligiousPreference")


class CharacterSetError(ValueError):
    """A data set whose Specific Character Set is unknown or contradicts its text."""


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword  # the configuration checked it
    return tag


def _values(element: DataElement | None) -> list[str]:
    if element is None or element.is_empty:
        return []
    value = element.value
    return [str(v) for v in value] if element.VM > 1 else [str(value)]


class View:
    """A data set's top level as the changes made so far leave it."""

    def __init__(self, dataset: Dataset, changes: Iterable[Change] = ()) -> None:
        self.dataset = dataset
        self._changes: dict[int, Change] = {change.tag: change for change in changes}

    def get(self, tag: int) -> DataElement | None:
        if tag in self._changes:
            return self._changes[tag].element
        found: DataElement | None = self.dataset.get(tag)
        return found

    def put(
        self, tag: int, element: DataElement | None, reason: Reason, recorded: bool = True
    ) -> None:
        earlier = self._changes.get(tag)
        original = earlier.original if earlier is not None else self.get(tag)
        keep = recorded and (earlier is None or earlier.recorded)
        self._changes[tag] = Change(tag, element, original, reason, keep)

    def changes(self) -> list[Change]:
        return [change for change in self._changes.values() if change.effective]


def apply_rule(view: View, rule: Coercion) -> None:
    """Copy, set, prefix, map, then remove, as the rule says."""
    for target, source in rule.copy:
        values = _values(view.get(_tag(source)))
        if values:
            view.put(_tag(target), element_for(_tag(target), "\\".join(values)), "COERCE")
    for target, value in rule.set:
        view.put(_tag(target), element_for(_tag(target), value), "COERCE")
    for target, text in rule.prefix:
        values = _values(view.get(_tag(target)))
        if values:
            prefixed = "\\".join(text + value for value in values)
            view.put(_tag(target), element_for(_tag(target), prefixed), "COERCE")
    for target, table in rule.map:
        values = _values(view.get(_tag(target)))
        mapping = dict(table)
        mapped = [mapping.get(value.strip(), value) for value in values]
        if mapped != values:
            view.put(_tag(target), element_for(_tag(target), "\\".join(mapped)), "COERCE")
    for target in rule.remove:
        if view.get(_tag(target)) is not None:
            view.put(_tag(target), None, "COERCE")


def character_set_problem(dataset: Dataset) -> str | None:
    """Why a data set's Specific Character Set cannot be right: a term no standard
    names, or top-level text that does not decode in it. ISO 2022 code extensions
    are taken on trust."""
    given = dataset.get("SpecificCharacterSet")
    terms = [given] if isinstance(given, str) else list(given or [])
    terms = [str(term).strip() for term in terms]
    unknown = [term for term in terms if term not in python_encoding]
    if unknown:
        return f"Specific Character Set {unknown[0]!r} is unknown"
    if len(terms) > 1 or any(term.startswith("ISO 2022") for term in terms):
        return None
    default = not terms or terms[0] in ("", "ISO_IR 6")
    codec = "ascii" if default else python_encoding[terms[0]]
    for tag in sorted(dataset.keys()):  # tags only: iterating converts every element
        raw = dataset.get_item(tag)
        if not isinstance(raw, RawDataElement) or not raw.value:
            continue
        if (raw.VR or vr_of(raw.tag)) not in CHARSET_VRS:
            continue
        try:
            raw.value.decode(codec)
        except UnicodeDecodeError:
            named = terms[0] if terms else "none (ASCII)"
            return f"{tag} does not decode in the Specific Character Set {named}"
    return None


@dataclass(frozen=True)
class ReceiveCoercion:
    """What the configuration changes in an object one sender sends."""

    rules: tuple[Coercion, ...] = ()
    french: bool = False
    check_character_set: bool = False
    system: str = ""
    """Our AE title: the Modifying System the stored object names."""

    def changes(self, dataset: Dataset) -> list[Change]:
        """The changes to make; raises :class:`CharacterSetError` for a data set refused.

        A character set rule comes first, and is declared on ``dataset`` at once, so
        that the text read afterwards is read in it.
        """
        view = View(dataset)
        declared = self._declare_character_set(view)
        if self.check_character_set and not declared:
            problem = character_set_problem(dataset)
            if problem is not None:
                raise CharacterSetError(problem)
        for rule in self.rules:
            apply_rule(view, rule)
        if self.french:
            for keyword in FRENCH_CLEARED:
                if view.get(_tag(keyword)) is not None:
                    view.put(_tag(keyword), None, "COERCE", recorded=False)
        return view.changes()

    def _declare_character_set(self, view: View) -> bool:
        chosen = next((rule for rule in reversed(self.rules) if rule.character_set), None)
        if chosen is None:
            return False
        dataset = view.dataset
        if chosen.character_set_mode == "default" and dataset.get("SpecificCharacterSet"):
            return False
        terms = chosen.character_set.split("\\")
        element = element_for(0x00080005, terms if len(terms) > 1 else terms[0])
        view.put(0x00080005, element, "COERCE")
        dataset.SpecificCharacterSet = element.value
        return True


def rewrite(
    source: Path,
    offset: int,
    stored: str,
    modification: Modification,
    target: Path,
    meta: Callable[[str], bytes],
) -> str:
    """Write the data set of ``source`` (from ``offset``, in ``stored``) as modified
    into ``target``, after the File Meta ``meta`` makes for the syntax written: the
    stored one, or Explicit VR Little Endian for one the re-encoder does not write.
    Returns that syntax; raises EncodingError or OSError."""
    syntax = stored if writable(stored) else ExplicitVRLittleEndian
    with source.open("rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    encoding = Encoding.of(syntax)
    chunks = reencode(
        memoryview(data)[offset:],
        Encoding.of(stored),
        encoding,
        modification.encoded(encoding.implicit),
    )
    with target.open("wb") as out:
        out.write(meta(syntax))
        out.writelines(chunks)
    return syntax


class Coercions:
    """The configured rules, chosen by direction and peer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def rules(self, direction: str, ae_title: str | None) -> tuple[Coercion, ...]:
        """The rules for a peer (None: the HTTP door, an import): those naming it, and
        those naming no AE, in the order of the configuration."""
        title = (ae_title or "").strip()
        return tuple(
            rule
            for rule in self.settings.coercions
            if rule.direction == direction and (not rule.ae_titles or title in rule.ae_titles)
        )

    def on_receive(self, ae_title: str | None) -> ReceiveCoercion | None:
        """What receiving from this sender changes; None when nothing could."""
        settings = self.settings
        rules = self.rules("receive", ae_title)
        french = settings.country == "FR"
        if not (rules or french or settings.check_character_set):
            return None
        return ReceiveCoercion(rules, french, settings.check_character_set, settings.ae_title)
