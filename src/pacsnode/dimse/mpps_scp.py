"""The MPPS door: N-CREATE and N-SET from modalities, kept and forwarded.

Each N-CREATE and N-SET that we accept is forwarded unchanged, through the job queue,
to every ``mpps_destinations`` AE; the forwards of one step run in order, so that a
destination never gets an N-SET before its N-CREATE. A COMPLETED step marks its
worklist items done and, if configured, tells subscribers the study is available.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from pynetdicom.events import Event

from pacsnode.archive.core import Archive
from pacsnode.archive.mpps import MppsError, MppsStore, Step
from pacsnode.dimse.scu import AssociationFailed, Peer, associate
from pacsnode.jobs.workers import Workers

log = logging.getLogger("pacsnode.mpps")

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
FORWARD_JOB = "mpps-forward"
SUCCESS = 0x0000


def _failure(error: MppsError) -> Dataset:
    status = Dataset()
    status.Status = error.status
    status.ErrorComment = str(error)[:64]
    return status


def forward(payload: dict[str, Any]) -> None:
    """The job: replay one N-CREATE or N-SET at a destination; raises to be retried."""
    peer = Peer(payload["host"], payload["port"], payload["destination"], payload["calling_ae"])
    context = build_context(MPPS_SOP_CLASS, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = associate(peer, [context])
    dataset = Dataset.from_json(payload["dataset"])
    uid = payload["sop_instance_uid"]
    try:
        if payload["operation"] == "create":
            status, _ = assoc.send_n_create(dataset, MPPS_SOP_CLASS, uid)
        else:
            status, _ = assoc.send_n_set(dataset, MPPS_SOP_CLASS, uid)
    finally:
        assoc.release()
    code = int(status.get("Status", -1)) if status else -1
    if code != SUCCESS and not 0xB000 <= code <= 0xBFFF:
        raise AssociationFailed(
            f"{peer.ae_title} answered the N-{payload['operation']} with {code:04X}"
        )


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
        workers.register(FORWARD_JOB, forward)

    def handle_create(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        calling_ae = event.assoc.requestor.ae_title
        request: N_CREATE = event.request  # type: ignore[assignment]
        uid = str(request.AffectedSOPInstanceUID or generate_uid())
        attributes = event.attribute_list
        try:
            step = self.store.create(uid, attributes, calling_ae)
        except MppsError as exc:
            log.warning("MPPS N-CREATE %s from %s refused: %s", uid, calling_ae, exc)
            return _failure(exc), None
        log.info("MPPS %s created by %s", uid, calling_ae)
        self._forward("create", uid, attributes, calling_ae)
        self.on_step(step)
        reply = Dataset()
        if request.AffectedSOPInstanceUID is None:
            reply.AffectedSOPInstanceUID = uid
        return SUCCESS, reply

    def handle_set(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        calling_ae = event.assoc.requestor.ae_title
        request: N_SET = event.request  # type: ignore[assignment]
        uid = str(request.RequestedSOPInstanceUID)
        modifications = event.modification_list
        try:
            step = self.store.update(uid, modifications)
        except MppsError as exc:
            log.warning("MPPS N-SET %s from %s refused: %s", uid, calling_ae, exc)
            return _failure(exc), None
        log.info("MPPS %s set to %s by %s", uid, step.status, calling_ae)
        self._forward("set", uid, modifications, calling_ae)
        self.on_step(step)
        return SUCCESS, Dataset()

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
