"""The ``route`` job: C-STORE what a routing rule matched to one destination.

One job is one association: a single instance, or a whole stable study. Each object
goes in the rule's ``transfer_syntax`` if set, else in the first of the destination's
``transfer_syntaxes`` it accepts, converted by :mod:`pacsnode.archive.transcoding`;
failing that, as stored (or decoded, as every C-STORE SCU may). Lossy compression is
applied only when the rule allows it and the object is not lossy already: compressing
twice would lose twice. A refused or lost object fails the job, which the queue
retries, resending the lot (destinations keep or replace what they already hold).
With ``commit``, storage commitment is requested afterwards. A payload with
``deidentify`` (a list of PS3.15 options) sends de-identified copies, made in the
data directory's ``tmp`` for the association and removed after it; their pseudonyms
come from the archive's key, so a study sent twice arrives under the same UIDs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pacsnode import audit, status
from pacsnode.archive.commitment import Reference
from pacsnode.archive.core import Archive
from pacsnode.archive.deidentify import Deidentifier, Options, pseudonym_key
from pacsnode.archive.schema import instance, patient, series, study
from pacsnode.archive.transcoding import modified
from pacsnode.config import RemoteAE, is_lossy_syntax
from pacsnode.dimse.commitment import ALL_COMMITTED, request_commitment
from pacsnode.dimse.scu import (
    AssociationFailed,
    Dialer,
    OutgoingFile,
    accepted_syntaxes,
    connect,
    edits_toward,
    send_one,
    store_contexts,
)
from pacsnode.jobs.workers import Workers
from pacsnode.net.association import Association
from pacsnode.workflows.routing import ROUTE_JOB

log = logging.getLogger("pacsnode.routing")

COMMITMENT_WAIT = 3.0
"""Seconds to wait for a commitment report on our association; a report that comes
later, on a new association, is logged by the DIMSE server."""
LOSSY_RATIO = 10


class RouteSender:
    def __init__(self, archive: Archive, workers: Workers, dialer: Dialer) -> None:
        self.archive = archive
        self.dialer = dialer
        workers.register(ROUTE_JOB, self.send)

    def send(self, payload: dict[str, Any]) -> None:
        """The job; raises (to be retried) unless every object was accepted."""
        destination = payload["destination"]
        remote = self.archive.remotes.get(destination)
        if remote is None:
            raise LookupError(f"{destination} is not a configured remote AE")
        if remote.move_destination_only:
            log.warning(
                "route %s: %s is a move destination only; not sent", payload["rule"], destination
            )
            return
        files = self._files(payload)
        if not files:
            log.info("route %s: nothing left to send to %s", payload["rule"], destination)
            return
        targets = [payload["transfer_syntax"]] if payload["transfer_syntax"] else []
        targets = targets or list(remote.transfer_syntaxes)
        with self._outgoing(files, payload.get("deidentify")) as outgoing:
            failures = self._store(remote, outgoing, targets, payload["allow_lossy"])
            if failures:
                raise AssociationFailed(
                    f"{len(failures)} of {len(files)} not stored at {destination}: {failures[0]}"
                )
        log.info("route %s: %d sent to %s", payload["rule"], len(files), destination)
        audit.instances_sent(_audited(remote), [item.sop_instance for item in files])
        if payload["commit"]:
            self._commit(remote, outgoing)

    @contextmanager
    def _outgoing(
        self, files: list[OutgoingFile], deidentify: list[str] | None
    ) -> Iterator[list[OutgoingFile]]:
        """The files to send: as stored, or de-identified copies with ``deidentify``, made
        from what the index says of them (their corrections, archive/outgoing.py)."""
        if deidentify is None:
            yield files
            return
        key = pseudonym_key(self.archive.settings.data_dir)
        deidentifier = Deidentifier(Options.from_words(deidentify), key)
        work = Path(tempfile.mkdtemp(prefix="deidentified-", dir=self.archive.storage.tmp))
        try:
            copies = []
            for number, item in enumerate(files):
                source = self._corrected(item, work / f"{number}.corrected.dcm")
                path = work / f"{number}.dcm"
                uid = deidentifier.file(source, path)
                copies.append(OutgoingFile(path, item.sop_class, uid, item.transfer_syntax, True))
            yield copies
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _corrected(self, item: OutgoingFile, copy: Path) -> Path:
        """The stored file, or a copy with the index's corrections written into it."""
        outgoing = self.archive.outgoing
        corrections = outgoing.corrections(item.path, item.sop_instance, item.edited)
        if not corrections:
            return item.path
        copy.write_bytes(modified(item.path, item.transfer_syntax, corrections))
        return copy

    def _files(self, payload: dict[str, Any]) -> list[OutgoingFile]:
        query = (
            sa.select(
                instance.c.file_path,
                instance.c.sop_class_uid,
                instance.c.sop_instance_uid,
                instance.c.transfer_syntax_uid,
                sa.or_(patient.c.edited, study.c.edited),
            )
            .join(series, series.c.pk == instance.c.series_pk)
            .join(study, study.c.pk == series.c.study_pk)
            .join(patient, patient.c.pk == study.c.patient_pk)
            .where(instance.c.rejection.is_(None))
            .order_by(series.c.pk, instance.c.pk)
        )
        if payload["study"]:
            query = query.where(study.c.study_instance_uid == payload["study"])
        else:
            query = query.where(instance.c.sop_instance_uid.in_(payload["instances"]))
        with self.archive.database.reader.connect() as connection:
            return [
                OutgoingFile(self.archive.storage.absolute(path), cls, uid, syntax, True, edited)
                for path, cls, uid, syntax, edited in connection.execute(query)
            ]

    def _store(
        self, remote: RemoteAE, files: list[OutgoingFile], targets: list[str], lossy: bool
    ) -> list[str]:
        """Send on one association; the failures, described."""
        wanted: dict[str, set[str]] = {}
        for item in files:
            wanted.setdefault(item.sop_class, set()).update({item.transfer_syntax, *targets})
        association = connect(self.dialer.peer(remote), store_contexts(wanted))
        audit.transfer_begun(_audited(remote), [item.sop_instance for item in files])
        failures = []
        try:
            for item in files:
                code, comment = self._send(association, item, targets, lossy)
                if not status.is_success_or_warning(code):
                    failures.append(f"{item.sop_instance}: {code} {comment}".strip())
        finally:
            association.release()
        return failures

    def _send(
        self, association: Association, item: OutgoingFile, targets: list[str], lossy: bool
    ) -> tuple[int | None, str]:
        """In the first target syntax the destination accepted and the object can be
        converted to, else as stored (or decoded); through the outgoing step."""
        edits = edits_toward(self.archive.outgoing, association.called_ae)
        accepted = accepted_syntaxes(association, item.sop_class)
        for target in targets:
            if target not in accepted:
                continue
            if target == item.transfer_syntax:
                break  # stored as the rule wants it: sent as stored
            ratio = LOSSY_RATIO if is_lossy_syntax(target) else None
            if ratio and not lossy:
                log.info("%s not sent in lossy %s: the rule forbids it", item.sop_instance, target)
                continue
            outcome = send_one(association, item, lossy_ratio=ratio, target=target, edits=edits)
            if outcome.status is None and outcome.comment.startswith("cannot convert"):
                log.info("%s not converted to %s: %s", item.sop_instance, target, outcome.comment)
                continue
            return outcome.status, outcome.comment
        outcome = send_one(association, item, edits=edits)
        return outcome.status, outcome.comment

    def _commit(self, remote: RemoteAE, files: list[OutgoingFile]) -> None:
        """Ask for storage commitment; a refusal fails the job, a late report does not."""
        peer = self.dialer.peer(remote)
        references = [Reference(item.sop_class, item.sop_instance) for item in files]
        try:
            report = request_commitment(peer, references, timeout=COMMITMENT_WAIT)
        except TimeoutError:
            log.info(
                "storage commitment requested from %s for %d instances; "
                "its report was not sent on our association",
                remote.ae_title,
                len(files),
            )
            return
        failed = len(report.information.get("FailedSOPSequence") or [])
        log.info(
            "storage commitment by %s: %d committed, %d failed%s",
            remote.ae_title,
            len(report.information.get("ReferencedSOPSequence") or []),
            failed,
            "" if report.event_type == ALL_COMMITTED else " (failures exist)",
        )


def _audited(remote: RemoteAE) -> audit.Actor:
    return audit.Actor(remote.ae_title, remote.host, dicom=True)
