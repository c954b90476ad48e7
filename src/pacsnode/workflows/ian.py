"""Instance Availability Notification SCU: telling subscribers a study is here.

A notification is queued when an MPPS is COMPLETED, and, if configured, once a study
has had no new instance for a while. The job builds the notification from the index
when it runs, so it lists what is actually stored by then.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from pacsnode import status
from pacsnode.archive.core import Archive
from pacsnode.archive.database import now
from pacsnode.archive.schema import instance, series, study
from pacsnode.dimse.catalog import INSTANCE_AVAILABILITY_NOTIFICATION, MPPS_SOP_CLASS
from pacsnode.dimse.nservices import n_create
from pacsnode.dimse.scu import AssociationFailed, Dialer, connect
from pacsnode.jobs.workers import Workers
from pacsnode.net.requestor import Proposal

log = logging.getLogger("pacsnode.ian")

IAN_JOB = "instance-availability"


def notification(archive: Archive, study_uid: str, mpps_uid: str | None = None) -> Dataset | None:
    """The IAN data set for what the archive holds of a study (None if nothing)."""
    query = (
        sa.select(
            series.c.series_instance_uid,
            instance.c.sop_class_uid,
            instance.c.sop_instance_uid,
        )
        .join(study, study.c.pk == series.c.study_pk)
        .join(instance, instance.c.series_pk == series.c.pk)
        .where(study.c.study_instance_uid == study_uid, instance.c.rejection.is_(None))
        .order_by(series.c.pk, instance.c.pk)
    )
    by_series: dict[str, list[Dataset]] = {}
    with archive.database.reader.connect() as connection:
        for series_uid, sop_class, sop_instance in connection.execute(query):
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            item.InstanceAvailability = "ONLINE"
            item.RetrieveAETitle = archive.settings.ae_title
            by_series.setdefault(series_uid, []).append(item)
    if not by_series:
        return None
    ian = Dataset()
    ian.StudyInstanceUID = study_uid
    step = Dataset()
    if mpps_uid:
        step.ReferencedSOPClassUID = MPPS_SOP_CLASS
        step.ReferencedSOPInstanceUID = mpps_uid
    ian.ReferencedPerformedProcedureStepSequence = [step] if mpps_uid else []
    ian.ReferencedSeriesSequence = []
    for series_uid, items in by_series.items():
        entry = Dataset()
        entry.SeriesInstanceUID = series_uid
        entry.ReferencedSOPSequence = items
        ian.ReferencedSeriesSequence.append(entry)
    return ian


class AvailabilityNotifier:
    def __init__(self, archive: Archive, workers: Workers, dialer: Dialer) -> None:
        self.archive = archive
        self.workers = workers
        self.dialer = dialer
        workers.register(IAN_JOB, self.send)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self, study_uid: str, mpps_uid: str | None = None) -> None:
        """Queue a notification of the study to every subscriber."""
        for subscriber in self.archive.settings.ian_subscribers:
            self.workers.enqueue(
                IAN_JOB,
                {"subscriber": subscriber, "study": study_uid, "mpps": mpps_uid},
                f"availability of {study_uid} to {subscriber}",
            )

    def send(self, payload: dict[str, Any]) -> None:
        """The job: N-CREATE the notification at one subscriber."""
        remote = self.archive.remotes.get(payload["subscriber"])
        if remote is None:
            raise LookupError(f"{payload['subscriber']} is not a configured remote AE")
        ian = notification(self.archive, payload["study"], payload.get("mpps"))
        if ian is None:
            log.info("study %s holds nothing to notify", payload["study"])
            return
        proposal = Proposal(
            INSTANCE_AVAILABILITY_NOTIFICATION, (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        )
        association = connect(self.dialer.peer(remote), [proposal])
        context = next(iter(association.contexts.values()))
        try:
            result = n_create(
                association, context, INSTANCE_AVAILABILITY_NOTIFICATION, generate_uid(), ian
            )
        finally:
            association.release()
        if result.status != status.SUCCESS:
            raise AssociationFailed(
                f"{remote.ae_title} answered the notification with {result.status:04X}"
            )

    def start(self) -> None:
        """Watch for studies that have gone quiet, if that is configured."""
        if (
            self.archive.settings.ian_study_stable_seconds > 0
            and self.archive.settings.ian_subscribers
        ):
            self._thread = threading.Thread(target=self._watch, name="ian-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch(self) -> None:
        quiet = self.archive.settings.ian_study_stable_seconds
        while not self._stop.wait(min(quiet / 2, 5.0)):
            try:
                for study_uid in self._quiet_studies(quiet):
                    self.notify(study_uid)
            except Exception:
                log.exception("cannot look for complete studies")

    def _quiet_studies(self, quiet: float) -> list[str]:
        """Studies with no new instance for ``quiet`` seconds, not announced since; they
        are marked announced by the same statement, so that of several nodes watching
        one index, one announces each study."""
        moment = now()
        due = sa.and_(
            study.c.updated_at <= moment - timedelta(seconds=quiet),
            sa.or_(study.c.notified_at.is_(None), study.c.notified_at < study.c.updated_at),
        )
        announce = (
            sa.update(study)
            .where(due)
            .values(notified_at=moment)
            .returning(study.c.study_instance_uid)
        )
        with self.archive.database.writer.begin() as connection:
            return list(connection.execute(announce).scalars())
