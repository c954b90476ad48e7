"""The MPPS SCU: tell a RIS or archive that a procedure step started, ended or was dropped.

What a modality sends (N-CREATE when it starts, N-SET when it is COMPLETED or
DISCONTINUED), so that an administrator can test an MPPS SCP or close a step by hand.
Statuses are returned, not raised: warnings (``B...``) are a success to the caller.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from pacsnode.dimse.catalog import MPPS_SOP_CLASS
from pacsnode.dimse.nservices import n_create, n_set
from pacsnode.dimse.scu import Peer, connect
from pacsnode.net.association import Association, Context
from pacsnode.net.requestor import Proposal


def _associate(peer: Peer) -> tuple[Association, Context]:
    proposal = Proposal(MPPS_SOP_CLASS, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))
    association = connect(peer, [proposal])
    return association, next(iter(association.contexts.values()))


def create(peer: Peer, dataset: Dataset, sop_instance_uid: str | None = None) -> tuple[int, str]:
    """N-CREATE a step; returns the status and the step's SOP Instance UID.

    We choose the UID (as modalities do) unless given one; an SCP may still assign its
    own, which is then the one returned.
    """
    uid = sop_instance_uid or generate_uid()
    association, context = _associate(peer)
    try:
        result = n_create(association, context, MPPS_SOP_CLASS, uid, dataset)
    finally:
        association.release()
    return result.status, result.instance or uid


def set(peer: Peer, sop_instance_uid: str, modifications: Dataset) -> int:
    """N-SET a step (its status, end date and time, performed series); returns the status."""
    association, context = _associate(peer)
    try:
        return n_set(association, context, MPPS_SOP_CLASS, sop_instance_uid, modifications).status
    finally:
        association.release()
