"""What the DIMSE server accepts: SOP classes, transfer syntaxes and roles.

The one table the acceptor negotiates from, and that the conformance statement is
made from: never a copy of it.
"""

from __future__ import annotations

from pacsnode.archive.uids import (
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
)
from pacsnode.config import Settings
from pacsnode.dimse.qr_model import FIND_SOP_CLASSES, GET_SOP_CLASSES, MOVE_SOP_CLASSES
from pacsnode.net.negotiation import Offer

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
INSTANCE_AVAILABILITY_NOTIFICATION = "1.2.840.10008.5.1.4.33"

_UNCOMPRESSED = tuple(UNCOMPRESSED_TRANSFER_SYNTAXES)


def storage_sop_classes(settings: Settings | None = None) -> tuple[str, ...]:
    """The storage SOP classes we accept: ``storage_sop_classes``, or all we know."""
    allowed = settings.storage_sop_classes if settings is not None else ()
    return tuple(uid for uid in STORAGE_SOP_CLASSES if not allowed or uid in allowed)


def storage_transfer_syntaxes(settings: Settings | None = None) -> tuple[str, ...]:
    """The transfer syntaxes of storage contexts, in our order: ``storage_transfer_syntaxes``
    (Implicit VR Little Endian always among them), or all we know."""
    allowed = settings.storage_transfer_syntaxes if settings is not None else ()
    return tuple(uid for uid in STORAGE_TRANSFER_SYNTAXES if not allowed or uid in allowed)


def offers(settings: Settings | None = None) -> dict[str, Offer]:
    """Every abstract syntax we serve, with our transfer syntaxes in our order; the
    storage classes and syntaxes as ``settings`` restrict them."""
    table: dict[str, Offer] = {VERIFICATION_SOP_CLASS: Offer(_UNCOMPRESSED)}
    for model in (*FIND_SOP_CLASSES, *MOVE_SOP_CLASSES, *GET_SOP_CLASSES):
        table[model] = Offer(_UNCOMPRESSED)
    table[MODALITY_WORKLIST_FIND] = Offer(_UNCOMPRESSED)
    table[MPPS_SOP_CLASS] = Offer(_UNCOMPRESSED)
    # Both roles: a peer asks us to commit, or reports what we asked it to commit.
    table[STORAGE_COMMITMENT] = Offer(_UNCOMPRESSED, requestor_may_be_scp=True)
    syntaxes = storage_transfer_syntaxes(settings)
    for storage_class in storage_sop_classes(settings):
        # Both roles: a C-GET requestor takes the SCP role to receive our C-STOREs.
        table[storage_class] = Offer(syntaxes, requestor_may_be_scp=True)
    return table
