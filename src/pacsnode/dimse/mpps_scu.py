"""The MPPS SCU: tell a RIS or archive that a procedure step started, ended or was dropped.

What a modality sends (N-CREATE when it starts, N-SET when it is COMPLETED or
DISCONTINUED), so that an administrator can test an MPPS SCP or close a step by hand.
Statuses are returned, not raised: warnings (``B...``) are a success to the caller.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context
from pynetdicom.association import Association

from pacsnode.dimse.mpps_scp import MPPS_SOP_CLASS
from pacsnode.dimse.scu import AssociationFailed, Peer, associate


def _associate(peer: Peer) -> Association:
    context = build_context(MPPS_SOP_CLASS, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = associate(peer, [context])
    if not assoc.accepted_contexts:
        assoc.release()
        raise AssociationFailed(f"{peer.ae_title} does not accept MPPS")
    return assoc


def _status(response: Dataset | None) -> int:
    if not response or "Status" not in response:
        raise AssociationFailed("no response: association lost or timed out")
    return int(response.Status)


def create(peer: Peer, dataset: Dataset, sop_instance_uid: str | None = None) -> tuple[int, str]:
    """N-CREATE a step; returns the status and the step's SOP Instance UID.

    We choose the UID (as modalities do) unless given one; an SCP may still assign its
    own, which is then the one returned.
    """
    uid = sop_instance_uid or generate_uid()
    assoc = _associate(peer)
    try:
        response, reply = assoc.send_n_create(dataset, MPPS_SOP_CLASS, uid)
        status = _status(response)
    finally:
        if assoc.is_established:
            assoc.release()
    assigned = response.get("AffectedSOPInstanceUID") or (reply or Dataset()).get(
        "AffectedSOPInstanceUID"
    )
    return status, str(assigned or uid)


def set(peer: Peer, sop_instance_uid: str, modifications: Dataset) -> int:
    """N-SET a step (its status, end date and time, performed series); returns the status."""
    assoc = _associate(peer)
    try:
        response, _ = assoc.send_n_set(modifications, MPPS_SOP_CLASS, sop_instance_uid)
        return _status(response)
    finally:
        if assoc.is_established:
            assoc.release()
