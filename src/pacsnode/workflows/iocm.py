"""IOCM outbound: telling other archives what left this one (digest-002 items 45, 60).

Whatever a deletion withdraws from view (``DELETE /api/...``, ``pacsnode delete``,
retention) becomes, for each study and each ``iocm_destinations`` AE, a job that
C-STOREs a Key Object Selection rejection note titled with the deletion's code
(113039 Data Retention Policy Expired unless another was chosen), then asks on the
same association for storage commitment of the note and waits there for the report:
only a synchronous answer counts. A rejection note received from elsewhere is
forwarded as stored, the same way, except back to the AE that sent it.

Jobs are queued by whichever process deletes (the server, or a CLI command writing
the queue directly) and sent by the server's workers, retried until the destination
has committed the note. The note's UIDs are chosen when it is queued, so a retry
sends the same note again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsnode import status
from pacsnode.archive.commitment import Reference
from pacsnode.archive.core import Archive
from pacsnode.archive.database import now
from pacsnode.archive.ingest import IngestResult, Outcome
from pacsnode.archive.receiving import Origin
from pacsnode.archive.rejection import KEY_OBJECT_SELECTION, Withdrawal, rejection_note
from pacsnode.dimse.catalog import STORAGE_COMMITMENT
from pacsnode.dimse.commitment import ALL_COMMITTED, SYNTAXES, commit_on
from pacsnode.dimse.scu import (
    AssociationFailed,
    Dialer,
    OutgoingFile,
    connect,
    send_one,
    store_contexts,
)
from pacsnode.jobs.workers import Workers
from pacsnode.net.requestor import Proposal

log = logging.getLogger("pacsnode.iocm")

IOCM_JOB = "iocm-rejection"
Enqueue = Callable[[str, dict[str, Any], str], int]
"""Queues a job: kind, payload, description (``Workers.enqueue``, ``JobQueue.enqueue``)."""


def announce(archive: Archive, enqueue: Enqueue) -> None:
    """Queue notes to the IOCM destinations for this archive's deletions and the
    rejection notes it receives; nothing when there are no destinations."""
    if not archive.settings.iocm_destinations:
        return
    archive.deletion.subscribe(lambda withdrawn: _deleted(archive, enqueue, withdrawn))
    archive.receiving.subscribe(lambda result, origin: _received(archive, enqueue, result, origin))


def _deleted(archive: Archive, enqueue: Enqueue, withdrawn: list[Withdrawal]) -> None:
    created = now().isoformat()
    for withdrawal in withdrawn:
        note_uid, series_uid = generate_uid(), generate_uid()
        for destination in archive.settings.iocm_destinations:
            payload = {
                "destination": destination,
                "note": note_uid,
                "series": series_uid,
                "created": created,
                "withdrawal": withdrawal.as_json(),
            }
            what = f"{withdrawal.count} instances of {withdrawal.study_uid}"
            enqueue(
                IOCM_JOB, payload, f"rejection note ({withdrawal.code}) for {what} to {destination}"
            )


def _received(archive: Archive, enqueue: Enqueue, result: IngestResult, origin: Origin) -> None:
    uid = result.sop_instance_uid
    if result.outcome is not Outcome.STORED or not uid:
        return
    stored = archive.index.find_instance(uid)
    if stored is None or stored.sop_class_uid != KEY_OBJECT_SELECTION:
        return
    if not archive.rejections.is_note(uid):
        return
    for destination in archive.settings.iocm_destinations:
        if destination != origin.source_ae.strip():
            payload = {"destination": destination, "forward": uid}
            enqueue(IOCM_JOB, payload, f"rejection note {uid} from {origin.door} to {destination}")


class IocmSender:
    """The job: one note, one association, C-STORE then commitment on it."""

    def __init__(self, archive: Archive, workers: Workers, dialer: Dialer) -> None:
        self.archive = archive
        self.workers = workers
        self.dialer = dialer
        workers.register(IOCM_JOB, self.send)
        announce(archive, workers.enqueue)

    def send(self, payload: dict[str, Any]) -> None:
        """Raises, to be retried, unless the destination stored and committed the note."""
        remote = self.archive.remotes.get(payload["destination"])
        if remote is None:
            raise LookupError(f"{payload['destination']} is not a configured remote AE")
        with self._note(payload) as note:
            if note is None:
                log.info("rejection note %s is no longer held; not sent", payload["forward"])
                return
            wanted = {KEY_OBJECT_SELECTION: {note.transfer_syntax}}
            proposals = [*store_contexts(wanted), Proposal(STORAGE_COMMITMENT, SYNTAXES)]
            association = connect(self.dialer.peer(remote), proposals)
            try:
                stored = send_one(association, note)
                if not status.is_success_or_warning(stored.status):
                    raise AssociationFailed(
                        f"{remote.ae_title} did not store rejection note {note.sop_instance}: "
                        f"{stored.status} {stored.comment}".strip()
                    )
                reference = Reference(KEY_OBJECT_SELECTION, note.sop_instance)
                report = commit_on(association, [reference], self.archive.settings.dimse_timeout)
            finally:
                association.release()
        if report is None:
            raise AssociationFailed(
                f"{remote.ae_title} sent no commitment report for {note.sop_instance} "
                "on the association (only a synchronous report is accepted)"
            )
        if report.event_type != ALL_COMMITTED:
            raise AssociationFailed(
                f"{remote.ae_title} did not commit rejection note {note.sop_instance}"
            )
        log.info("rejection note %s stored and committed by %s", note.sop_instance, remote.ae_title)
        self.workers.queue.report(
            self.workers.current_job().pk,
            {"note": note.sop_instance, "destination": remote.ae_title, "committed": True},
        )

    def _note(self, payload: dict[str, Any]) -> _NoteFile:
        if "forward" in payload:
            stored = self.archive.index.find_instance(payload["forward"])
            if stored is None:
                return _NoteFile(None)
            path = self.archive.storage.absolute(stored.file_path)
            item = OutgoingFile(
                path,
                KEY_OBJECT_SELECTION,
                stored.sop_instance_uid,
                stored.transfer_syntax_uid,
                True,
            )
            return _NoteFile(item)
        note = rejection_note(
            Withdrawal.from_json(payload["withdrawal"]),
            payload["note"],
            payload["series"],
            datetime.fromisoformat(payload["created"]),
        )
        note.file_meta = FileMetaDataset()
        note.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        handle, name = tempfile.mkstemp(dir=self.archive.storage.tmp, suffix=".dcm")
        os.close(handle)
        path = Path(name)
        note.save_as(path, enforce_file_format=True)
        item = OutgoingFile(
            path, KEY_OBJECT_SELECTION, payload["note"], ExplicitVRLittleEndian, True
        )
        return _NoteFile(item, path)


class _NoteFile:
    """The note to send, and the temporary file to remove once sent (a built note)."""

    def __init__(self, item: OutgoingFile | None, temporary: Path | None = None) -> None:
        self.item = item
        self.temporary = temporary

    def __enter__(self) -> OutgoingFile | None:
        return self.item

    def __exit__(self, *_exc: object) -> None:
        if self.temporary is not None:
            self.temporary.unlink(missing_ok=True)
