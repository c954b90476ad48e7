"""Storage commitment: may a sender delete its copy of these instances?

Only if we hold each one under the SOP class it was sent as, and its file is still on
disk with the checksum it had when it was received. An instance that an IOCM rejection
note withdrew is as good as gone; the note itself, hidden from queries as it is, is
held and committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from pacsnode.archive import checksums
from pacsnode.archive.index import Index, StoredInstance
from pacsnode.archive.rejection import KEY_OBJECT_SELECTION
from pacsnode.archive.schema import rejected_instance
from pacsnode.archive.storage import ObjectStore

PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


@dataclass(frozen=True)
class Reference:
    sop_class_uid: str
    sop_instance_uid: str


@dataclass
class Commitment:
    committed: list[Reference] = field(default_factory=list)
    failed: list[tuple[Reference, int]] = field(default_factory=list)
    """Each failed reference with its Failure Reason (PS3.4 Table J.3-2)."""


def _intact(storage: ObjectStore, key: str, checksum: str) -> bool:
    with storage.open(key) as handle:
        return checksums.of_stream(handle, checksum) == checksum


def _rejection_note(index: Index, stored: StoredInstance) -> bool:
    """Whether a hidden instance is a rejection note, which hides itself, rather than an
    instance that a note rejected (those are remembered in ``rejected_instance``)."""
    if stored.sop_class_uid != KEY_OBJECT_SELECTION:
        return False
    rejected = sa.select(rejected_instance.c.pk).where(
        rejected_instance.c.sop_instance_uid == stored.sop_instance_uid
    )
    with index.database.reader.connect() as connection:
        return connection.execute(rejected.limit(1)).first() is None


def commit(index: Index, storage: ObjectStore, references: list[Reference]) -> Commitment:
    result = Commitment()
    for reference in references:
        stored = index.find_instance(reference.sop_instance_uid)
        if stored is None or (stored.rejection and not _rejection_note(index, stored)):
            result.failed.append((reference, NO_SUCH_OBJECT_INSTANCE))
        elif stored.sop_class_uid != reference.sop_class_uid:
            result.failed.append((reference, CLASS_INSTANCE_CONFLICT))
        else:
            key = stored.file_path
            try:
                intact = storage.exists(key) and _intact(storage, key, stored.checksum)
            except OSError:
                intact = False
            if intact:
                result.committed.append(reference)
            else:
                result.failed.append((reference, PROCESSING_FAILURE))
    return result
