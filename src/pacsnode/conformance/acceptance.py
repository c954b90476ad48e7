"""The Association Acceptance Policy of the statement: the accepted presentation
contexts, extended negotiation, and the SOP specific conformance of storage,
Query/Retrieve (every matching key and its matching types) and the workflow services,
with the statuses each answers."""

from __future__ import annotations

from collections.abc import Sequence

from pacsnode.conformance.blocks import Section, Table, yes
from pacsnode.conformance.model import Key, Statement


def acceptance(s: Statement) -> Section:
    storage = [c for c in s.accepted if c.transfer_syntaxes == "storage"]
    rows = [
        (c.sop_class.name, c.sop_class.uid, f"'{c.transfer_syntaxes}' set", "/".join(c.roles))
        for c in s.accepted
        if c.transfer_syntaxes != "storage"
    ]
    if storage:
        roles = "/".join(storage[0].roles)
        rows.append(
            (f"the {len(storage)} accepted storage classes of Annex A", "", "'storage' set", roles)
        )
    extended = [
        (c.sop_class.name, c.extended_negotiation) for c in s.accepted if c.extended_negotiation
    ]
    return Section(
        "Association Acceptance Policy",
        [
            f"Any calling AE is accepted unless access control (Security) refuses it. "
            f"Transfer syntax choice: within each proposed context, "
            f"{s.association.transfer_syntax_choice}. A context for an abstract syntax not "
            "listed is refused 'abstract syntax not supported', one without a transfer "
            "syntax of its set 'transfer syntaxes not supported'. Role selection is "
            "granted as proposed where the table lists the role (SCU: the requestor takes "
            "the SCP role, as a C-GET requestor does).",
            Table(
                ("abstract syntax", "UID", "transfer syntaxes (Annex B)", "our roles"),
                rows,
                "Accepted presentation contexts",
            ),
            Table(("SOP class", "extended negotiation"), extended, "Extended negotiation"),
            _storage_conformance(s),
            _query_conformance(s),
            _workflow_conformance(s),
            Section(
                "Statuses",
                [
                    Table(
                        ("service", "status", "meaning", "when"),
                        [(x.service, x.code, x.meaning, x.when) for x in s.statuses],
                    )
                ],
            ),
        ],
    )


def _storage_conformance(s: Statement) -> Section:
    return Section(
        "SOP Specific Conformance: Storage",
        [
            "Level 2 (Full) storage: every object is kept byte for byte as received, "
            "private and retired attributes, odd UIDs and its transfer syntax included, "
            "after File Meta Information naming the sending AE. A success is answered only "
            "after the file is synced and indexed. Digital signatures are kept as received.",
            "IOCM: a Key Object Selection titled DCM 113001, 113037, 113038 or 113039 hides "
            "what it references; a copy of an instance rejected for 113001, 113037 or "
            "113038 is not stored.",
        ],
    )


def _keys_table(keys: Sequence[Key]) -> Table:
    return Table(
        ("level", "attribute", "tag", "matching", "case-insensitive", "unique"),
        [
            (
                key.level,
                key.keyword,
                key.tag,
                ", ".join(key.matching) or "return only",
                yes(key.case_insensitive),
                yes(key.unique),
            )
            for key in keys
        ],
    )


def _query_conformance(s: Statement) -> Section:
    q = s.query
    spanning = ", ".join(q.find_spanning) or "none"
    return Section(
        "SOP Specific Conformance: Query/Retrieve",
        [
            Table(
                ("information model", "FIND", "MOVE", "GET", "levels"),
                [
                    (m.name, m.find.uid, m.move.uid, m.get.uid, ", ".join(m.levels))
                    for m in s.query_models
                ],
            ),
            "Hierarchical queries, and relational queries and retrieval when the "
            "requestor asks for them in extended negotiation; combined date-time matching "
            "likewise. Every requested key is returned, empty when unknown; a key the "
            "index does not hold makes the pending status FF01. Requests are decoded in "
            f"their own Specific Character Set; answers are encoded in "
            f"{q.response_character_set}. Case-insensitive matching: "
            f"{yes(q.case_insensitive).lower()}. C-FIND spanning to: {spanning}; C-MOVE "
            f"spanning: {yes(q.move_spanning).lower()}.",
            "A C-MOVE destination must be a remote AE (else A801); the instances go over one "
            "association as their stored bytes when the destination accepts their syntax, "
            "else decompressed, never made lossy. C-GET sends them on the requestor's "
            "association.",
            _keys_table(s.query_keys),
        ],
    )


def _workflow_conformance(s: Statement) -> Section:
    w = s.workflow
    reports = ", ".join(f"{ae}: {mode}" for ae, mode in w.commitment_reports) or "none configured"
    mpps = ", ".join(w.mpps_destinations) or "none"
    ian = ", ".join(w.ian_subscribers) or "none"
    stable = f"{w.ian_study_stable_seconds:g} s" if w.ian_study_stable_seconds else "off"
    return Section(
        "SOP Specific Conformance: Workflow",
        [
            Section(
                "Storage Commitment Push Model",
                [
                    "An instance is committed when it is indexed under the SOP class asked "
                    "about, not rejected, and its file still has the checksum it had on "
                    "arrival. The report goes on the requester's association while it is "
                    "open, else on a new one to its configured address, as each remote AE's "
                    f"commitment_report says ({reports}); an unknown requester gets it on "
                    "the same association only. The node also requests commitment as SCU.",
                ],
            ),
            Section(
                "Modality Worklist",
                [
                    "Every attribute of a worklist item, top-level or in the Scheduled "
                    "Procedure Step Sequence, is a matching key, matched by its VR; the "
                    "table lists the keys modalities use. Items whose procedure step is "
                    "COMPLETED or DISCONTINUED are "
                    f"{'not returned' if w.worklist_hide_finished else 'returned'}. HL7 "
                    f"orders: {'port ' + str(w.hl7_port) if w.hl7_port else 'off'}.",
                    _keys_table(s.worklist_keys),
                ],
            ),
            Section(
                "Modality Performed Procedure Step",
                [
                    "N-CREATE and N-SET with the standard statuses; each accepted request "
                    f"is forwarded in order to: {mpps}, under "
                    f"{'the modality' if w.mpps_keep_calling_ae else 'our'} AE title.",
                ],
            ),
            Section(
                "Instance Availability Notification (SCU)",
                [
                    f"Subscribers: {ian}; when a procedure step is COMPLETED: "
                    f"{yes(w.ian_on_mpps_completed).lower()}; when a study is quiet for: "
                    f"{stable}.",
                ],
            ),
        ],
    )
