"""Each instance's DICOM JSON without its bulk data, kept in the index.

Viewers open a study by asking for the metadata of all its instances; parsing a
thousand files for that takes seconds. The document is made once per stored copy
and kept in ``instance_metadata``: made in the background once the archive has been
quiet for a moment after receiving, or on the first request for an instance that
has none yet. A replaced instance gets a new row pk, so its old document goes with
the old row (ON DELETE CASCADE).

Bulk data values become BulkDataURIs. The documents hold them relative to a marker
that stands for the DICOMweb root, which the door replaces with the URL the client
used (see :data:`BASE`).
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset, dcmread
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import Tag
from sqlalchemy.dialects import postgresql, sqlite

from pacsnode.archive.database import Database
from pacsnode.archive.modification import Modification
from pacsnode.archive.outgoing import Outgoing
from pacsnode.archive.retrieve import Located, located_row, visible_instances
from pacsnode.archive.schema import instance, instance_metadata
from pacsnode.archive.storage import Storage

log = logging.getLogger(__name__)

BASE = "@@PACSNODE_DICOMWEB_ROOT@@"
"""Stands for the DICOMweb root URL in stored documents."""
BULK_THRESHOLD = 1024
"""Binary values larger than this are given as BulkDataURIs, not inline."""
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_UNDEFINED = 0xFFFFFFFF


def instance_path(study: str, series: str, sop_instance: str) -> str:
    """The instance's WADO-RS path below the DICOMweb root."""
    return f"/studies/{study}/series/{series}/instances/{sop_instance}"


def _vr(raw: RawDataElement) -> str:
    if raw.VR:
        return str(raw.VR)
    try:
        return str(dictionary_VR(raw.tag))
    except KeyError:
        return "UN"


def _bulk_vr(vr: str) -> str:
    return "OW" if vr in ("OB or OW", "US or OW") else vr


_STRUCT_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_STRUCT_FORMATS |= {"UV": "Q", "SV": "q"}
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"})
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_DELIMITERS = {0x5E, 0x3D}
_SKIPPED = 0xFFFCFFFC  # Data Set Trailing Padding: not part of the object's content
_CHUNK = 50


class _Converter:
    """Raw elements straight to DICOM JSON.

    pydicom's ``to_json_dict`` builds a DataElement per raw element and caches it back
    in the data set, about 20 µs an element; a CT header of 250 elements took 5 ms.
    The common VRs are decoded here from their bytes, and anything unusual (AT,
    ambiguous VRs, big endian, sequences) is handed to pydicom.
    """

    def __init__(self, url: str, dataset: Dataset) -> None:
        self.url = url
        self.little_endian = dataset.is_little_endian is not False

    def dataset(
        self, dataset: Dataset, prefix: str = "", encodings: list[str] | None = None
    ) -> dict[str, Any]:
        """A data set or sequence item; an item may name its own character set."""
        if encodings is None or "SpecificCharacterSet" in dataset:
            encodings = convert_encodings(dataset.get("SpecificCharacterSet"))
        converted: dict[str, Any] = {}
        for tag, element in dataset._dict.items():
            if tag.element == 0 or tag == _SKIPPED:
                continue  # group lengths describe an encoding, not the object
            path = f"{prefix}{tag:08X}"
            converted[f"{tag:08X}"] = self.element(dataset, element, path, encodings)
        return converted

    def element(
        self, dataset: Dataset, element: Any, path: str, encodings: list[str]
    ) -> dict[str, Any]:
        if isinstance(element, RawDataElement) and (
            element.VR == "UN" or (not element.VR and element.tag.is_private)
        ):
            element = dataset[element.tag]  # pydicom knows many VRs, private ones too
        vr = _vr(element) if isinstance(element, RawDataElement) else str(element.VR)
        if vr == "SQ":
            items = dataset[element.tag].value or []
            return {
                "vr": "SQ",
                "Value": [
                    self.dataset(item, f"{path}/{i}/", encodings) for i, item in enumerate(items)
                ],
            }
        if vr in _BINARY_VRS:
            return self._binary(element, _bulk_vr(vr), path)
        deferred = isinstance(element, RawDataElement) and element.value is None and element.length
        if deferred or not isinstance(element, RawDataElement) or not self._decodes(vr):
            return dict(dataset[element.tag].to_json_dict(None, BULK_THRESHOLD))
        values = self._values(vr, element.value or b"", encodings)
        return {"vr": vr, "Value": values} if values else {"vr": vr}

    def _decodes(self, vr: str) -> bool:
        if vr in _STRUCT_FORMATS:
            return self.little_endian
        return vr in _TEXT_VRS or vr in _SINGLE_VALUED or vr in ("PN", "IS", "DS")

    def _binary(self, element: Any, vr: str, path: str) -> dict[str, Any]:
        length = element.length if isinstance(element, RawDataElement) else len(element.value)
        if length == _UNDEFINED or length > BULK_THRESHOLD:
            return {"vr": vr, "BulkDataURI": f"{self.url}/bulkdata/{path}"}
        value = element.value
        if not value:
            return {"vr": vr}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}

    def _values(self, vr: str, raw: bytes, encodings: list[str]) -> list[Any]:
        if vr in _STRUCT_FORMATS:
            code = _STRUCT_FORMATS[vr]
            count = len(raw) // struct.calcsize(code)
            return list(struct.unpack(f"<{count}{code}", raw[: count * struct.calcsize(code)]))
        if vr in _CHARSET_VRS:
            delimiters = _PN_DELIMITERS if vr == "PN" else set()
            text = decode_bytes(raw, encodings, delimiters)
        else:
            text = raw.decode("ascii", "replace")
        text = text.rstrip(" \0")
        if not text:
            return []
        texts = [text] if vr in _SINGLE_VALUED else text.split("\\")
        if vr == "PN":
            return [_person(value) for value in texts]
        if vr in ("IS", "DS"):
            return [_number(value, vr == "IS") for value in texts]
        return [value.strip(" \0") or None for value in texts]


def _person(text: str) -> dict[str, str] | None:
    groups = {
        name: group
        for name, group in zip(_PN_GROUPS, text.rstrip().split("="), strict=False)
        if group
    }
    return groups or None


def _number(text: str, integer: bool) -> int | float | None:
    text = text.strip()
    try:
        return int(text) if integer else float(text)
    except ValueError:
        try:
            return int(float(text)) if integer else None
        except ValueError:
            return None


def document(
    path: Path, located: Located, modification: Modification | None = None
) -> dict[str, Any]:
    """The DICOM JSON of a stored file, bulk data as URIs below :data:`BASE`, with what
    the outgoing step changes in it.

    Values longer than the threshold are left on disk while reading, so pixel data is
    never read.
    """
    url = BASE + instance_path(
        located.study_instance_uid, located.series_instance_uid, located.sop_instance_uid
    )
    dataset = dcmread(path, force=True, defer_size=BULK_THRESHOLD)
    converted = _Converter(url, dataset).dataset(dataset)
    if not modification:
        return converted
    for tag, value in modification.json().items():
        if value is None:
            converted.pop(tag, None)
        else:
            converted[tag] = value
    return dict(sorted(converted.items()))


def bulk_value(dataset: Dataset, tag_path: str) -> DataElement | None:
    """The element a bulk data path names: ``7FE00010`` or ``SSSSSSSS/i/TTTTTTTT``."""
    parts = tag_path.split("/")
    current: Dataset = dataset
    try:
        while len(parts) > 1:
            sequence, index, *parts = parts
            current = current[Tag(int(sequence, 16))].value[int(index)]
        return current.get(Tag(int(parts[0], 16)))
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class MetadataCache:
    def __init__(self, database: Database, storage: Storage, outgoing: Outgoing) -> None:
        self.database = database
        self.storage = storage
        self.outgoing = outgoing
        """What goes out of an instance edited in the index, or coerced for the HTTP
        door, is what its document says; an edit drops the documents it changes."""
        self._making = threading.Lock()
        """Held while making a chunk, so that a request and the warmer never make the
        same documents twice: each re-reads what is there once it holds the lock."""

    def documents(self, located: list[Located]) -> list[str]:
        """The serialised documents of these instances, in their order; an instance
        whose file cannot be read is left out."""
        stored = self._read(item.pk for item in located)
        missing = [item for item in located if item.pk not in stored]
        for start in range(0, len(missing), _CHUNK):
            stored.update(self._fill(missing[start : start + _CHUNK]))
        return [stored[item.pk] for item in located if item.pk in stored]

    def _fill(self, located: list[Located]) -> dict[int, str]:
        with self._making:
            have = self._read(item.pk for item in located)
            have.update(self._make([item for item in located if item.pk not in have]))
            return have

    def _read(self, pks: Iterable[int]) -> dict[int, str]:
        wanted = list(pks)
        found: dict[int, str] = {}
        with self.database.reader.connect() as connection:
            for start in range(0, len(wanted), 900):  # SQLite's bound-parameter limit
                chunk = wanted[start : start + 900]
                rows = connection.execute(
                    sa.select(instance_metadata.c.instance_pk, instance_metadata.c.document).where(
                        instance_metadata.c.instance_pk.in_(chunk)
                    )
                )
                found.update({row.instance_pk: row.document for row in rows})
        return found

    def _make(self, located: list[Located]) -> dict[int, str]:
        made: dict[int, str] = {}
        for item in located:
            try:
                modification = self.outgoing.modification(
                    item.path, item.sop_instance_uid, item.edited, None
                )
                text = json.dumps(document(item.path, item, modification), separators=(",", ":"))
                made[item.pk] = text
            except Exception as exc:  # a file gone or unreadable is answered without it
                log.error("metadata of %s unavailable: %s", item.sop_instance_uid, exc)
        self._save(made)
        return made

    def _save(self, made: dict[int, str]) -> None:
        if not made:
            return
        rows = [{"instance_pk": pk, "document": text} for pk, text in made.items()]
        dialect = postgresql if self.database.writer.dialect.name == "postgresql" else sqlite
        # Another process or node may have made some of them meanwhile: theirs stay.
        insert = dialect.insert(instance_metadata).on_conflict_do_nothing(
            index_elements=["instance_pk"]
        )
        try:
            with self.database.writer.begin() as connection:
                connection.execute(insert, rows)
        except sa.exc.DBAPIError as exc:  # an instance deleted meanwhile: made again later
            log.info("metadata not cached this time: %s", exc)

    def warm_after(self, last_pk: int, limit: int) -> int | None:
        """Make the documents of up to ``limit`` instances above ``last_pk``; returns
        the highest pk done, or ``None`` when there is nothing above ``last_pk``."""
        statement = visible_instances().where(instance.c.pk > last_pk).order_by(instance.c.pk)
        with self.database.reader.connect() as connection:
            rows = connection.execute(statement.limit(limit)).all()
        if not rows:
            return None
        located = [located_row(row, self.storage) for row in rows]
        self._fill(located)
        return max(item.pk for item in located)

    def newest_pk(self) -> int:
        with self.database.reader.connect() as connection:
            return int(connection.execute(sa.select(sa.func.max(instance.c.pk))).scalar() or 0)

    def newest_documented_pk(self) -> int:
        with self.database.reader.connect() as connection:
            newest = sa.select(sa.func.max(instance_metadata.c.instance_pk))
            return int(connection.execute(newest).scalar() or 0)


class MetadataWarmer:
    """Makes documents for newly received instances once receiving pauses.

    Receiving is CPU-bound, so the work waits until the newest instance has stayed
    the newest for ``quiet`` seconds. It goes on from the newest instance that has a
    document, so what ``pacsnode import`` added while the server was down is covered;
    an instance older than that without one gets it when first asked for.
    """

    def __init__(self, cache: MetadataCache, quiet: float = 1.0, batch: int = _CHUNK) -> None:
        self.cache = cache
        self.quiet = quiet
        self.batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metadata-warmer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            done, seen = self.cache.newest_documented_pk(), -1
            while not self._stop.wait(self.quiet):
                newest = self.cache.newest_pk()
                if newest != seen:
                    seen = newest  # still receiving: wait for a quiet moment
                    continue
                while done < newest and not self._stop.is_set():
                    reached = self.cache.warm_after(done, self.batch)
                    done = newest if reached is None else reached
                    if self.cache.newest_pk() != newest:
                        break
        except Exception:
            log.exception("metadata warmer stopped")
