"""Prefetch: a patient's prior studies fetched from remote archives before they are read.

When a worklist item is scheduled or a modality reports a procedure step IN PROGRESS,
the patient's studies are looked up on each archive named in ``prefetch_from`` and the
newest ones not held here are retrieved (syngo.share EventServer's "fetch",
digest-003). The lookup runs as a ``prefetch`` job, queued in the index from whichever
process scheduled the item, so a remote that is down delays it and loses nothing;
each study then comes through its own ``retrieve`` job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset

from pacsnode.archive.core import Archive
from pacsnode.archive.schema import study
from pacsnode.config import Settings
from pacsnode.dimse import query_scu
from pacsnode.dimse.scu import AssociationFailed, Dialer, Peer
from pacsnode.jobs.queue import JobQueue
from pacsnode.jobs.workers import Workers
from pacsnode.workflows import retrieve as retrieve_scu

log = logging.getLogger("pacsnode.prefetch")

PREFETCH_JOB = "prefetch"


def on_scheduled(queue: JobQueue, settings: Settings) -> Callable[[Dataset], None] | None:
    """The worklist's callback for a new item, when prefetch is configured."""
    if not settings.prefetch_from:
        return None
    return lambda item: request_prefetch(queue, settings, item, "worklist item")


def request_prefetch(queue: JobQueue, settings: Settings, dataset: Dataset, reason: str) -> None:
    """Queue the lookup of the priors of the patient a worklist item or step names."""
    patient_id = str(dataset.get("PatientID") or "").strip()
    if not settings.prefetch_from or not patient_id:
        return
    payload = {"patient_id": patient_id, "issuer": str(dataset.get("IssuerOfPatientID") or "")}
    queue.enqueue(
        PREFETCH_JOB,
        payload,
        f"prefetch priors of patient {patient_id} ({reason})",
        queue_key=f"prefetch/{patient_id}",
    )


class Prefetcher:
    """Runs ``prefetch`` jobs in the server."""

    def __init__(self, archive: Archive, workers: Workers, dialer: Dialer) -> None:
        self.archive = archive
        self.queue = workers.queue
        self.dialer = dialer
        workers.register(PREFETCH_JOB, self.run)

    def run(self, payload: dict[str, Any]) -> None:
        """Find the patient's studies on each source and retrieve the newest missing.

        A source that cannot be reached is skipped; the job fails (and is retried)
        only when none could be asked.
        """
        settings = self.archive.settings
        asked = 0
        for ae_title in settings.prefetch_from:
            remote = self.archive.remotes.get(ae_title)
            if remote is None:
                log.error("prefetch source %s is not a remote AE", ae_title)
                continue
            peer = self.dialer.peer(remote)
            try:
                priors = self._priors(peer, payload)
            except (AssociationFailed, query_scu.QueryFailed) as exc:
                log.warning("prefetch from %s failed: %s", ae_title, exc)
                continue
            asked += 1
            for uid in self._missing(priors)[: settings.prefetch_max_studies]:
                request = retrieve_scu.RetrieveRequest(remote.ae_title, uid)
                retrieve_scu.enqueue(self.queue, self.archive.remotes, request)
                log.info("prefetching study %s from %s", uid, ae_title)
        if settings.prefetch_from and not asked:
            raise ConnectionError("no prefetch source could be asked")

    @staticmethod
    def _priors(peer: Peer, payload: dict[str, Any]) -> list[Dataset]:
        keys = {"PatientID": payload["patient_id"], "StudyInstanceUID": "", "StudyDate": ""}
        if payload["issuer"]:
            keys["IssuerOfPatientID"] = payload["issuer"]
        answers = list(query_scu.find(peer, "study", "STUDY", keys))
        return sorted(answers, key=lambda a: str(a.get("StudyDate") or ""), reverse=True)

    def _missing(self, priors: list[Dataset]) -> list[str]:
        """The priors' Study Instance UIDs, newest first, without those held here."""
        uids = [str(a.StudyInstanceUID) for a in priors if a.get("StudyInstanceUID")]
        with self.archive.database.reader.connect() as connection:
            held = set(
                connection.execute(
                    sa.select(study.c.study_instance_uid).where(
                        study.c.study_instance_uid.in_(uids), study.c.num_instances > 0
                    )
                ).scalars()
            )
        return [uid for uid in dict.fromkeys(uids) if uid not in held]
