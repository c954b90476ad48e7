"""MPPS forwarding: each N-CREATE and N-SET we accept, replayed at every destination.

Forwards are ``mpps-forward`` jobs queued in the index; those of one step share a
queue key, so that they run in order and a destination never gets an N-SET before
its N-CREATE.
"""

from __future__ import annotations

from typing import Any

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsnode import status
from pacsnode.dimse.catalog import MPPS_SOP_CLASS
from pacsnode.dimse.nservices import n_create, n_set
from pacsnode.dimse.scu import AssociationFailed, Dialer, connect
from pacsnode.net.requestor import Proposal

FORWARD_JOB = "mpps-forward"


class MppsForwarder:
    """The job: replay one N-CREATE or N-SET at a destination; raises to be retried."""

    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer

    def __call__(self, payload: dict[str, Any]) -> None:
        peer = self.dialer.to(
            payload["host"], payload["port"], payload["destination"], payload["calling_ae"]
        )
        proposal = Proposal(MPPS_SOP_CLASS, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))
        association = connect(peer, [proposal])
        dataset = Dataset.from_json(payload["dataset"])
        uid = payload["sop_instance_uid"]
        context = next(iter(association.contexts.values()))
        try:
            if payload["operation"] == "create":
                result = n_create(association, context, MPPS_SOP_CLASS, uid, dataset)
            else:
                result = n_set(association, context, MPPS_SOP_CLASS, uid, dataset)
        finally:
            association.release()
        if not status.is_success_or_warning(result.status):
            raise AssociationFailed(
                f"{peer.ae_title} answered the N-{payload['operation']} with {result.status:04X}"
            )
