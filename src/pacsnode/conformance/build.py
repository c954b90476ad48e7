"""The conformance statement of a node, read from what its network layer uses.

The accepted presentation contexts are :func:`pacsnode.dimse.catalog.offers` of the
settings (what the server negotiates from), the granted extended negotiation is
:func:`~pacsnode.dimse.qr_model.negotiate_extended` asked for everything, and the
proposed contexts come from the SCU modules' own tables (``store_contexts``, the
query models, the print and commitment classes). The policies (matching keys,
statuses, security, configuration) are in :mod:`.policies`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from pacsnode import __version__
from pacsnode.archive.uids import (
    COMMON_STORAGE_SOP_CLASSES,
    STORAGE_SOP_CLASSES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
)
from pacsnode.config import RemoteAE, Settings
from pacsnode.conformance import changes, policies
from pacsnode.conformance.model import (
    AcceptedContext,
    Activity,
    AssociationPolicy,
    ProposedContext,
    QueryModel,
    Service,
    Statement,
    Uid,
    named,
)
from pacsnode.dimse import catalog, commitment, print_scu, query_scu, scu
from pacsnode.dimse.qr_model import negotiate_extended
from pacsnode.dimse.server import IDENTITY
from pacsnode.net.negotiation import Offer
from pacsnode.net.pdu import APPLICATION_CONTEXT
from pacsnode.net.requestor import MAX_CONTEXTS

STORAGE_SET = "storage"
UNCOMPRESSED_SET = "uncompressed"
COMMON_STORAGE_SET = "common storage"
MODEL_NAMES = {"patient": "Patient Root", "study": "Study Root", "psonly": "Patient/Study Only"}
EXTENDED_OPTIONS = (
    "relational queries and retrieval",
    "combined date-time matching",
    "fuzzy semantic matching of person names",
    "timezone query adjustment",
)
"""The bytes of Query/Retrieve extended negotiation (PS3.4 C.5), in order."""
UNCOMPRESSED = tuple(UNCOMPRESSED_TRANSFER_SYNTAXES)
SYNTAXES = commitment.SYNTAXES
"""Explicit then Implicit VR Little Endian: what the N-services propose."""
_STORED = "(stored)"


def statement(settings: Settings, remotes: Sequence[RemoteAE] = ()) -> Statement:
    """The statement of a node with these settings, knowing these remote AEs (the
    remote AE table: config file and run-time entries)."""
    remotes = tuple(remotes) or settings.remote_ae
    offers = catalog.offers(settings)
    sets = _syntax_sets(settings)
    return Statement(
        product="pacsnode",
        version=__version__,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        ae_title=settings.ae_title,
        dicom_port=settings.dicom_port,
        services=_services(offers),
        transfer_syntax_sets={name: _named(uids) for name, uids in sets.items()},
        sop_class_sets={
            STORAGE_SET: _named(STORAGE_SOP_CLASSES),
            COMMON_STORAGE_SET: _named(COMMON_STORAGE_SOP_CLASSES[: MAX_CONTEXTS - 1]),
        },
        accepted=tuple(_accepted(uid, offer, sets) for uid, offer in offers.items()),
        activities=_activities(),
        association=_association(settings),
        query_models=tuple(
            QueryModel(MODEL_NAMES[key], named(m.find), named(m.move), named(m.get), m.levels)
            for key, m in query_scu.MODELS.items()
            if m.move is not None and m.get is not None
        ),
        query=policies.query(settings),
        query_keys=policies.query_keys(settings),
        worklist_keys=policies.worklist_keys(settings),
        workflow=policies.workflow(settings, remotes),
        statuses=policies.STATUSES,
        character_sets=policies.character_sets(),
        dicomweb_url=policies.dicomweb_url(settings),
        dicomweb=policies.dicomweb() if settings.http_port else (),
        media=policies.media(),
        security=policies.security(settings),
        deidentification=changes.deidentification(),
        remote_aes=policies.remote_nodes(remotes),
        configuration=policies.configuration(settings),
        differences=policies.differences(settings, remotes),
    )


def _named(uids: Iterable[str]) -> tuple[Uid, ...]:
    return tuple(named(uid) for uid in uids)


def _syntax_sets(settings: Settings) -> dict[str, tuple[str, ...]]:
    return {
        UNCOMPRESSED_SET: tuple(UNCOMPRESSED_TRANSFER_SYNTAXES),
        STORAGE_SET: catalog.storage_transfer_syntaxes(settings),
    }


def _set_name(uid: str, syntaxes: tuple[str, ...], sets: dict[str, tuple[str, ...]]) -> str:
    """The set a context's syntaxes are: the storage set for a storage class, even when
    storage_transfer_syntaxes makes it the same as the uncompressed one."""
    preferred = STORAGE_SET if uid in STORAGE_SOP_CLASSES else UNCOMPRESSED_SET
    if sets[preferred] == syntaxes:
        return preferred
    return next(name for name, uids in sets.items() if uids == syntaxes)


def extended_negotiation(sop_class: str) -> str:
    """What we grant of extended negotiation for a SOP class, asked by the server's
    own reply to a request for every option."""
    granted = negotiate_extended(sop_class, b"\x01" * len(EXTENDED_OPTIONS))
    if granted is None:
        return ""
    options = [name for name, byte in zip(EXTENDED_OPTIONS, granted, strict=True) if byte]
    declined = [name for name, byte in zip(EXTENDED_OPTIONS, granted, strict=True) if not byte]
    return f"granted as asked: {', '.join(options)}; declined: {', '.join(declined)}"


def _accepted(uid: str, offer: Offer, sets: dict[str, tuple[str, ...]]) -> AcceptedContext:
    roles = ("SCP",) * offer.requestor_may_be_scu + ("SCU",) * offer.requestor_may_be_scp
    return AcceptedContext(
        named(uid), _set_name(uid, offer.transfer_syntaxes, sets), roles, extended_negotiation(uid)
    )


def _services(offers: dict[str, Offer]) -> tuple[Service, ...]:
    """The overview: each SOP class we use (every one the SCU side proposes) or
    provide (the catalog), in the groups of PS3.2."""
    groups = {
        "Verification": (VERIFICATION_SOP_CLASS,),
        "Transfer": STORAGE_SOP_CLASSES,
        "Query/Retrieve": _query_classes(),
        "Workflow Management": _workflow_classes(),
        "Print Management": tuple(print_scu.PROPOSED),
    }
    return tuple(
        Service(group, named(uid), True, uid in offers)
        for group, uids in groups.items()
        for uid in uids
    )


def _query_classes() -> tuple[str, ...]:
    return tuple(
        uid
        for model in query_scu.MODELS.values()
        if model.move is not None and model.get is not None
        for uid in (model.find, model.move, model.get)
    )


def _workflow_classes() -> tuple[str, ...]:
    return (
        query_scu.MODELS["mwl"].find,
        catalog.MPPS_SOP_CLASS,
        catalog.STORAGE_COMMITMENT,
        catalog.INSTANCE_AVAILABILITY_NOTIFICATION,
    )


def _association(settings: Settings) -> AssociationPolicy:
    choice = {
        "proposer": "the first transfer syntax in the proposer's order that we accept",
        "ours": "the first transfer syntax in our order that the proposer offered",
    }[settings.transfer_syntax_choice]
    return AssociationPolicy(
        application_context=APPLICATION_CONTEXT,
        implementation_class_uid=IDENTITY.implementation_class_uid,
        implementation_version_name=IDENTITY.implementation_version_name,
        max_pdu_receive=settings.max_pdu_size,
        max_associations=settings.max_associations,
        max_contexts_proposed=MAX_CONTEXTS,
        transfer_syntax_choice=choice,
        acse_timeout=settings.acse_timeout,
        network_timeout=settings.network_timeout,
        dimse_timeout=settings.dimse_timeout,
        workers=settings.workers,
    )


def _activities() -> tuple[Activity, ...]:
    """What we propose, activity by activity, from the SCU modules' tables."""
    both = _named(query_scu.SYNTAXES)
    models = [m for m in query_scu.MODELS.values() if m.move is not None and m.get is not None]
    return (
        Activity(
            "Verification",
            "'pacsnode echo' and POST /api/remote/{ae}/echo check that a node answers.",
            (ProposedContext((named(VERIFICATION_SOP_CLASS),), _named(UNCOMPRESSED), "SCU"),),
        ),
        Activity(
            "Send objects",
            "C-MOVE sub-operations, routing rules, store jobs and 'pacsnode store' send "
            "stored objects: per SOP class, one context for each transfer syntax the objects "
            "are stored in, alone, then one with the syntaxes an object is converted to when "
            "its own is refused (never to a lossy one). Objects go over as few associations "
            f"as {MAX_CONTEXTS} contexts allow.",
            _store_contexts(),
        ),
        Activity(
            "Query",
            "'pacsnode find', 'worklist find', C-FIND spanning, prefetch and federated "
            "QIDO-RS. Spanning forwards the requestor's transfer syntax first and its "
            "extended negotiation unaltered.",
            tuple(
                ProposedContext((named(model.find),), both, "SCU")
                for model in query_scu.MODELS.values()
            ),
        ),
        Activity(
            "Retrieve by C-MOVE",
            "'pacsnode move', retrieve jobs with method move (our AE title as the "
            "destination) and C-MOVE spanning.",
            tuple(
                ProposedContext((named(model.move),), both, "SCU") for model in models if model.move
            ),
        ),
        Activity(
            "Retrieve by C-GET",
            "'pacsnode get' and retrieve jobs with method get: the C-GET context, and the "
            "storage classes to receive in the SCP role. When a C-FIND told the classes, each "
            "is proposed uncompressed and once per common compressed syntax alone; otherwise "
            f"the {MAX_CONTEXTS - 1} most common classes uncompressed.",
            (
                *(ProposedContext((named(m.get),), both, "SCU") for m in models if m.get),
                ProposedContext(
                    (),
                    both,
                    "SCP",
                    COMMON_STORAGE_SET,
                    "when the classes are not known",
                ),
                *(
                    ProposedContext((), (named(ts),), "SCP", STORAGE_SET, "each class retrieved")
                    for ts in query_scu.KEPT_COMPRESSED_SYNTAXES
                ),
            ),
        ),
        Activity(
            "Storage commitment",
            "'pacsnode commit' and routing rules with commit ask a node to commit, taking "
            "both roles so that its report can come on the same association; a report we "
            "owe goes on a new association in the SCP role when the requester is gone.",
            (
                ProposedContext((named(catalog.STORAGE_COMMITMENT),), _named(SYNTAXES), "SCU"),
                ProposedContext((named(catalog.STORAGE_COMMITMENT),), _named(SYNTAXES), "SCP"),
            ),
        ),
        Activity(
            "Workflow notifications",
            "MPPS forwarding to mpps_destinations and 'pacsnode mpps'; Instance "
            "Availability Notification to ian_subscribers.",
            (
                ProposedContext((named(catalog.MPPS_SOP_CLASS),), _named(SYNTAXES), "SCU"),
                ProposedContext(
                    (named(catalog.INSTANCE_AVAILABILITY_NOTIFICATION),), _named(SYNTAXES), "SCU"
                ),
            ),
        ),
        Activity(
            "Print",
            "'pacsnode print' and print jobs on a [[printer]]: both meta SOP classes, "
            "Presentation LUT and Print Job on one association.",
            tuple(
                ProposedContext((named(uid),), _named(print_scu.SYNTAXES), "SCU")
                for uid in print_scu.PROPOSED
            ),
        ),
    )


def _store_contexts() -> tuple[ProposedContext, ...]:
    """Read from ``store_contexts`` itself: a placeholder syntax marks where the
    object's own syntax goes."""
    contexts = []
    for proposal in scu.store_contexts({STORAGE_SET: {_STORED}}):
        stored = proposal.transfer_syntaxes == (_STORED,)
        contexts.append(
            ProposedContext(
                (),
                () if stored else _named(proposal.transfer_syntaxes),
                "SCU",
                STORAGE_SET,
                "the transfer syntax the object is stored in, alone"
                if stored
                else "what an object is converted to when its own syntax is refused",
            )
        )
    return tuple(contexts)
