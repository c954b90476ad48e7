"""The MPPS door: N-CREATE and N-SET from modalities, kept and forwarded.

Each N-CREATE and N-SET that we accept is forwarded unchanged, through the job queue,
to every ``mpps_destinations`` AE; the forwards of one step run in order, so that a
destination never gets an N-SET before its N-CREATE. A COMPLETED step marks its
worklist items done and, if configured, tells subscribers the study is available.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydicom import Dataset
from pydicom.uid import generate_uid

from pacsnode import status
from pacsnode.archive.core import Archive
from pacsnode.archive.mpps import MppsError, MppsStore, Step
from pacsnode.dimse import codec
from pacsnode.dimse.requests import Request
from pacsnode.jobs.workers import Workers
from pacsnode.workflows.mpps_forward import FORWARD_JOB

log = logging.getLogger("pacsnode.mpps")


class MppsSCP:
    def __init__(
        self,
        archive: Archive,
        workers: Workers,
        on_step: Callable[[Step], None] = lambda _step: None,
    ) -> None:
        self.archive = archive
        self.workers = workers
        self.store = MppsStore(archive.database)
        self.on_step = on_step
        """Called with each stored step: worklist status and availability follow it."""

    def handle_create(self, request: Request) -> None:
        calling_ae = request.session.calling_ae
        given = str(request.command.get("AffectedSOPInstanceUID", ""))
        uid = given or generate_uid()
        try:
            attributes = request.dataset()
            self.archive.issuers.amend_step(attributes, calling_ae)
            step = self.store.create(uid, attributes, calling_ae)
        except (MppsError, codec.DecodeError) as exc:
            log.warning("MPPS N-CREATE %s from %s refused: %s", uid, calling_ae, exc)
            request.respond(getattr(exc, "status", status.PROCESSING_FAILURE), str(exc))
            return
        log.info("MPPS %s created by %s", uid, calling_ae)
        self._forward("create", uid, attributes, calling_ae)
        self.on_step(step)
        request.respond(status.SUCCESS, AffectedSOPInstanceUID=uid)

    def handle_set(self, request: Request) -> None:
        calling_ae = request.session.calling_ae
        uid = str(request.command.get("RequestedSOPInstanceUID", ""))
        try:
            modifications = request.dataset()
            step = self.store.update(uid, modifications)
        except (MppsError, codec.DecodeError) as exc:
            log.warning("MPPS N-SET %s from %s refused: %s", uid, calling_ae, exc)
            request.respond(getattr(exc, "status", status.PROCESSING_FAILURE), str(exc))
            return
        log.info("MPPS %s set to %s by %s", uid, step.status, calling_ae)
        self._forward("set", uid, modifications, calling_ae)
        self.on_step(step)
        request.respond(status.SUCCESS)

    def _forward(self, operation: str, uid: str, dataset: Dataset, calling_ae: str) -> None:
        settings = self.archive.settings
        for destination in settings.mpps_destinations:
            remote = self.archive.remotes.get(destination)
            if remote is None:
                log.error("MPPS destination %s is not a configured remote AE", destination)
                continue
            payload = {
                "operation": operation,
                "sop_instance_uid": uid,
                "dataset": dataset.to_json_dict(),
                "destination": remote.ae_title,
                "host": remote.host,
                "port": remote.port,
                "calling_ae": calling_ae if settings.mpps_keep_calling_ae else settings.ae_title,
            }
            self.workers.enqueue(
                FORWARD_JOB,
                payload,
                f"MPPS N-{operation.upper()} {uid} to {remote.ae_title}",
                queue_key=f"mpps/{remote.ae_title}/{uid}",
            )
