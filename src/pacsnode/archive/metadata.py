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

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import Tag

from pacsnode.archive.database import Database
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


def _is_bulk(raw: Any) -> bool:
    if isinstance(raw, RawDataElement):
        large = raw.length == _UNDEFINED or raw.length > BULK_THRESHOLD
        return large and _vr(raw) in _BINARY_VRS
    value = raw.value
    return raw.VR in _BINARY_VRS and isinstance(value, bytes) and len(value) > BULK_THRESHOLD


def _bulk_vr(vr: str) -> str:
    return "OW" if vr in ("OB or OW", "US or OW") else vr


def document(path: Path, located: Located) -> dict[str, Any]:
    """The DICOM JSON of a stored file, bulk data as URIs below :data:`BASE`.

    Large top-level values are taken out before pydicom converts the rest, so pixel
    data is never read; nested large values go through pydicom's bulk data handler.
    """
    url = BASE + instance_path(
        located.study_instance_uid, located.series_instance_uid, located.sop_instance_uid
    )
    dataset = dcmread(path, force=True, defer_size=BULK_THRESHOLD)
    bulk: dict[int, str] = {}
    for element_tag, raw in list(dataset._dict.items()):
        if _is_bulk(raw):
            bulk[element_tag] = _bulk_vr(
                _vr(raw) if isinstance(raw, RawDataElement) else str(raw.VR)
            )
            del dataset._dict[element_tag]

    def nested(element: DataElement) -> str:
        return f"{url}/bulkdata/{element.tag:08X}"

    converted = dataset.to_json_dict(BULK_THRESHOLD, nested)
    for tag, vr in bulk.items():
        converted[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": f"{url}/bulkdata/{tag:08X}"}
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
    def __init__(self, database: Database, storage: Storage) -> None:
        self.database = database
        self.storage = storage

    def documents(self, located: list[Located]) -> list[str]:
        """The serialised documents of these instances, in their order."""
        stored = self._read(item.pk for item in located)
        missing = [item for item in located if item.pk not in stored]
        if missing:
            stored.update(self._make(missing))
        return [stored[item.pk] for item in located]

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
                made[item.pk] = json.dumps(document(item.path, item), separators=(",", ":"))
            except Exception as exc:  # a file gone or unreadable is answered without it
                log.error("metadata of %s unavailable: %s", item.sop_instance_uid, exc)
        self._save(made)
        return made

    def _save(self, made: dict[int, str]) -> None:
        if not made:
            return
        rows = [{"instance_pk": pk, "document": text} for pk, text in made.items()]
        try:
            with self.database.writer.begin() as connection:
                existing = set(
                    connection.execute(
                        sa.select(instance_metadata.c.instance_pk).where(
                            instance_metadata.c.instance_pk.in_(list(made))
                        )
                    ).scalars()
                )
                fresh = [row for row in rows if row["instance_pk"] not in existing]
                if fresh:
                    connection.execute(sa.insert(instance_metadata), fresh)
        except sa.exc.DBAPIError as exc:  # a concurrent delete or writer: made again later
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
        have = self._read(item.pk for item in located)
        self._make([item for item in located if item.pk not in have])
        return max(item.pk for item in located)

    def newest_pk(self) -> int:
        with self.database.reader.connect() as connection:
            return int(connection.execute(sa.select(sa.func.max(instance.c.pk))).scalar() or 0)


class MetadataWarmer:
    """Makes documents for newly received instances once receiving pauses.

    Receiving is CPU-bound, so the work waits until the newest instance has stayed
    the newest for ``quiet`` seconds. It starts from the instances present at start;
    older ones are made when first asked for.
    """

    def __init__(self, cache: MetadataCache, quiet: float = 1.0, batch: int = 200) -> None:
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
            done = seen = self.cache.newest_pk()
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
