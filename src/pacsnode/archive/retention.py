"""Retention: deleting studies the archive no longer has to keep, by rule.

Two rules, both off by default: studies older than ``retention_days`` (from their
Study Date, or from when they were received), and, while the data directory's
filesystem is fuller than ``retention_disk_percent``, the oldest studies first. Each
study goes through :meth:`Deletion.delete <pacsnode.archive.deletion.Deletion.delete>`
hard (rows and files), with the reason 113039 Data Retention Policy Expired, so that
it is audited as DICOM Study Deleted by pacsnode itself and the IOCM destinations are
told, as for any deletion. The job that runs this lives in
:mod:`pacsnode.workflows.retention`; what it removed is its report.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from pacsnode.archive.database import now
from pacsnode.archive.deletion import Deletion, NothingToDelete, Target
from pacsnode.archive.rejection import RETENTION_EXPIRED
from pacsnode.archive.schema import study
from pacsnode.config import Settings

log = logging.getLogger("pacsnode.retention")

DiskUsage = Callable[[], tuple[int, int]]
"""(used, total) bytes of the filesystem the archive stores its files on."""


@dataclass(frozen=True)
class Removed:
    study: str
    instances: int
    bytes: int
    why: str


@dataclass
class RetentionReport:
    removed: list[Removed] = field(default_factory=list)
    disk_percent: float | None = None
    """How full the filesystem was once the run ended, when the disk rule is on."""

    def as_json(self) -> dict[str, Any]:
        return {
            "removed": [vars(item) for item in self.removed],
            "studies": len(self.removed),
            "instances": sum(item.instances for item in self.removed),
            "bytes": sum(item.bytes for item in self.removed),
            "disk_percent": self.disk_percent,
        }


def enabled(settings: Settings) -> bool:
    return settings.retention_days > 0 or settings.retention_disk_percent > 0


class Retention:
    def __init__(self, deletion: Deletion, settings: Settings, usage: DiskUsage) -> None:
        self.deletion = deletion
        self.database = deletion.database
        self.settings = settings
        self.usage = usage

    @classmethod
    def of(cls, deletion: Deletion, settings: Settings) -> Retention:
        """Retention over the filesystem of the archive's storage."""

        def usage() -> tuple[int, int]:
            disk = shutil.disk_usage(deletion.storage.root)
            return disk.total - disk.free, disk.total

        return cls(deletion, settings, usage)

    def run(self) -> RetentionReport:
        """Apply both rules once; what was removed, by study."""
        report = RetentionReport()
        days = self.settings.retention_days
        if days > 0:
            for uid in self._older_than(days):
                self._remove(uid, f"older than {days} days", report)
        watermark = self.settings.retention_disk_percent
        if watermark > 0:
            for uid in self._oldest_first():
                percent = self._percent()
                if percent <= watermark:
                    break
                self._remove(uid, f"disk {percent:.1f}% full, above {watermark:g}%", report)
            report.disk_percent = round(self._percent(), 2)
        return report

    def _percent(self) -> float:
        used, total = self.usage()
        return 100.0 * used / total if total else 0.0

    def _remove(self, uid: str, why: str, report: RetentionReport) -> None:
        try:
            deleted = self.deletion.delete(Target("study", uid), True, None, RETENTION_EXPIRED)
        except NothingToDelete:  # deleted meanwhile by someone else
            return
        log.info("retention deleted study %s (%d instances): %s", uid, deleted.instances, why)
        report.removed.append(Removed(uid, deleted.instances, deleted.size, why))

    def _older_than(self, days: int) -> list[str]:
        cutoff = now() - timedelta(days=days)
        received_before = study.c.created_at < cutoff
        if self.settings.retention_from == "received":
            condition = received_before
        else:
            undated = sa.or_(study.c.study_date.is_(None), study.c.study_date == "")
            dated_before = sa.and_(~undated, study.c.study_date < cutoff.strftime("%Y%m%d"))
            condition = sa.or_(dated_before, sa.and_(undated, received_before))
        query = sa.select(study.c.study_instance_uid).where(condition).order_by(study.c.pk)
        with self.database.reader.connect() as connection:
            return list(connection.execute(query).scalars())

    def _oldest_first(self) -> Iterator[str]:
        """Studies by age: by Study Date (undated ones after the dated) or by receipt."""
        if self.settings.retention_from == "received":
            order: list[Any] = [study.c.created_at, study.c.pk]
        else:
            undated = sa.or_(study.c.study_date.is_(None), study.c.study_date == "")
            order = [sa.case((undated, 1), else_=0), study.c.study_date, study.c.created_at]
        query = sa.select(study.c.study_instance_uid).order_by(*order)
        with self.database.reader.connect() as connection:
            uids = list(connection.execute(query).scalars())
        yield from uids
