"""What a node offers of the services the doctor probes, and what the probes share.

One association proposes every Query/Retrieve and workflow class, asking for
relational queries: what it accepts decides which probes run. A probe that costs the
association is reported by :func:`lost`, which recognises how some nodes turn away a
calling AE title they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pacsnode.dimse.catalog import MPPS_SOP_CLASS, STORAGE_COMMITMENT
from pacsnode.dimse.commitment import SYNTAXES
from pacsnode.dimse.query_scu import MODELS, Model
from pacsnode.dimse.scu import Peer, open_association
from pacsnode.doctor.listener import Listener
from pacsnode.doctor.report import Finding, Outcome
from pacsnode.net.association import Aborted
from pacsnode.net.requestor import Proposal

RELATIONAL = b"\x01"


@dataclass(frozen=True)
class Sample:
    """An instance the node holds, found by C-FIND."""

    keys: dict[str, str]
    """Its unique keys down to the instance: what a C-MOVE or C-GET identifier names."""
    sop_class: str
    """Empty when the node does not return SOP Class UID (DCMTK's dcmqrscp)."""

    @property
    def sop_instance(self) -> str:
        return self.keys["SOPInstanceUID"]


@dataclass(frozen=True)
class Negotiated:
    """What the node accepted of the services we use, in one association."""

    accepted: frozenset[str]
    relational: frozenset[str]


@dataclass(frozen=True)
class Whereabouts:
    """Where we listen for the node's associations, as it should have it for us."""

    listener: Listener | None
    address: str
    port: int
    why_not: str = ""
    """Why we could not listen (the port taken by our running server)."""

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def lost(section: str, check: str, what: str, exc: Exception, calling_ae: str) -> Finding:
    """A service that cost the association; an abort is how some nodes (Orthanc) turn
    away a calling AE title they do not know or allow."""
    hint = ""
    if isinstance(exc, Aborted):
        hint = (
            f"the remote aborted the association at our {what}: some nodes do so for a "
            f"calling AE title they do not know or allow; check that it knows {calling_ae} "
            f"and allows it {what}"
        )
    return Finding(section, check, Outcome.FAILED, f"{what}: {exc}", hint)


def qr_models() -> dict[str, Model]:
    """The Query/Retrieve models by their command-line names (not the worklist)."""
    return {name: m for name, m in MODELS.items() if m.move is not None and m.get is not None}


def negotiate(peer: Peer) -> Negotiated:
    """Propose every Query/Retrieve and workflow class at once, asking for relational
    queries; raises :class:`AssociationFailed` without an association."""
    retrieve = [uid for m in qr_models().values() for uid in (m.find, m.move, m.get) if uid]
    classes = [*retrieve, MODELS["mwl"].find, MPPS_SOP_CLASS, STORAGE_COMMITMENT]
    asked = replace(peer, extended={uid: RELATIONAL for uid in retrieve})
    association = open_association(asked, [Proposal(uid, SYNTAXES) for uid in classes])
    try:
        accepted = frozenset(c.abstract_syntax for c in association.contexts.values())
        extended = association.accept.user.extended
        relational = frozenset(uid for uid, info in extended.items() if info[:1] == RELATIONAL)
    finally:
        association.release()
    return Negotiated(accepted, relational)
