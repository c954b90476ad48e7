"""The statement laid out in the sections of PS3.2 Annex A, as blocks a renderer writes.

A section holds paragraphs, bullet lists, tables and subsections; the renderers number
the sections. The 226 storage SOP classes and the transfer syntax sets go to annexes,
named from the tables that use them, as vendors' statements do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pacsnode.conformance.model import (
    Activity,
    Key,
    ProposedContext,
    Setting,
    Statement,
    Uid,
)


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass
class Section:
    title: str
    blocks: Sequence[Block] = field(default_factory=list)


Block = str | Table | Bullets | Section


def _yes(flag: bool) -> str:
    return "Yes" if flag else "No"


def _uid(uid: Uid) -> str:
    return f"{uid.name} ({uid.uid})"


def _names(uids: Iterable[Uid]) -> str:
    return ", ".join(uid.name for uid in uids)


def document(statement: Statement) -> list[Section]:
    return [
        _overview(statement),
        _introduction(statement),
        _networking(statement),
        _media(statement),
        _character_sets(statement),
        _security(statement),
        _annexes(statement),
    ]


def _overview(s: Statement) -> Section:
    storage = [service for service in s.services if service.group == "Transfer"]
    accepted = sum(service.scp for service in storage)
    rows = [
        (
            "Transfer",
            f"Storage: {len(storage)} SOP classes, {accepted} of them accepted (Annex A)",
            "Yes",
            _yes(accepted > 0),
        )
    ]
    rows += [
        (service.group, service.sop_class.name, _yes(service.scu), _yes(service.scp))
        for service in s.services
        if service.group != "Transfer"
    ]
    media = [(profile.name, "Yes", "Yes") for profile in s.media]
    return Section(
        f"Conformance Statement Overview: {s.product} {s.version}",
        [
            f"{s.product} is a DICOM archive: it stores what modalities send, answers "
            "queries and retrieves, keeps worklists and procedure steps, commits storage, "
            "and sends, routes and prints what it holds. This statement was generated from "
            f"the running configuration of AE {s.ae_title} at {s.generated}: what it lists "
            "is what the node accepts and proposes now.",
            Table(("group", "SOP class", "SCU", "SCP"), rows, "Network services"),
            Table(
                ("media storage application profile", "write (FSC, FSU)", "read (FSR)"),
                media,
                "Media services",
            ),
        ],
    )


def _introduction(s: Statement) -> Section:
    return Section(
        "Introduction",
        [
            Section(
                "Revision",
                [f"{s.product} {s.version}; generated {s.generated}."],
            ),
            Section(
                "Remarks",
                [
                    "Every table is read from the tables the node's network layer uses "
                    "(its presentation context catalog, what its SCU side proposes, the "
                    "matching keys of its index) and from its settings, so a change of "
                    "configuration changes this statement. Section 'Rules of the current "
                    "configuration' lists what the configuration changes.",
                    "References: DICOM PS3.2 (conformance), PS3.4 (service classes), PS3.7 "
                    "(message exchange), PS3.8 (network communication), PS3.10 and PS3.11 "
                    "(media), PS3.15 (security), PS3.18 (web services).",
                ],
            ),
        ],
    )


def _networking(s: Statement) -> Section:
    return Section(
        "Networking",
        [
            _implementation_model(s),
            Section(
                f"AE Specification: {s.ae_title}",
                [
                    _sop_classes(s),
                    _association_policies(s),
                    _initiation(s),
                    _acceptance(s),
                ],
            ),
            _interfaces(s),
            _configuration(s),
            _dicomweb(s),
        ],
    )


def _implementation_model(s: Statement) -> Section:
    return Section(
        "Implementation Model",
        [
            Section(
                "Application Data Flow",
                [
                    Bullets(
                        [
                            "Modalities and workstations store objects (C-STORE, STOW-RS); "
                            "each is kept as received and indexed.",
                            "Workstations query (C-FIND, QIDO-RS) and retrieve (C-MOVE, "
                            "C-GET, WADO); C-MOVE opens an association to the destination.",
                            "Modalities ask for storage commitment (N-ACTION) and get a "
                            "report (N-EVENT-REPORT) on the same or a new association.",
                            "Modalities query the worklist (C-FIND) and report procedure "
                            "steps (N-CREATE, N-SET), which may be forwarded.",
                            "Rules route what arrives to other nodes; the node notifies "
                            "subscribers of available instances (IAN), retrieves priors and "
                            "prints on request.",
                        ]
                    )
                ],
            ),
            Section(
                "Functional Definition of the AE",
                [
                    f"One AE, {s.ae_title}, serves every DIMSE service on port "
                    f"{s.dicom_port} (and its TLS port), in up to "
                    f"{s.association.max_associations} associations at once, each on "
                    "its own thread; the same AE title is the calling AE of every "
                    "association the node opens.",
                ],
            ),
            Section(
                "Sequencing of Real-World Activities",
                [
                    "A C-STORE is acknowledged only after the object is on disk and in "
                    "the index, so a query after an acknowledgement finds it. A C-MOVE's "
                    "final response is sent after its sub-association is released. A "
                    "storage commitment report follows the N-ACTION response.",
                ],
            ),
        ],
    )


def _sop_classes(s: Statement) -> Section:
    rows = [
        (service.sop_class.name, service.sop_class.uid, _yes(service.scu), _yes(service.scp))
        for service in s.services
        if service.group != "Transfer"
    ]
    return Section(
        "SOP Classes",
        [
            "The storage SOP classes are listed in Annex A, with whether each is accepted.",
            Table(("SOP class", "UID", "SCU", "SCP"), rows),
        ],
    )


def _association_policies(s: Statement) -> Section:
    a = s.association
    pdu = f"{a.max_pdu_receive} bytes" if a.max_pdu_receive else "unlimited"
    workers = f"{a.workers} worker processes" if a.workers else "one worker process per CPU core"
    return Section(
        "Association Policies",
        [
            Section(
                "General",
                [
                    Table(
                        ("parameter", "value"),
                        [
                            ("Application context name", a.application_context),
                            ("Maximum PDU size received", pdu),
                            ("Maximum PDU size sent", "the peer's announced maximum"),
                            (
                                "Presentation contexts proposed",
                                f"at most {a.max_contexts_proposed}",
                            ),
                        ],
                    )
                ],
            ),
            Section(
                "Number of Associations",
                [
                    f"At most {a.max_associations} associations are served at once, counted "
                    f"across {workers}; more are rejected-transient, 'local limit exceeded'. "
                    "The associations the node opens are bounded by its job workers and by the "
                    "requests it serves.",
                ],
            ),
            Section(
                "Asynchronous Nature",
                [
                    "Operations are performed one at a time on each association; a proposed "
                    "asynchronous operations window is answered with 1 invoked, 1 performed.",
                ],
            ),
            Section(
                "Implementation Identifying Information",
                [
                    Table(
                        ("parameter", "value"),
                        [
                            ("Implementation Class UID", a.implementation_class_uid),
                            ("Implementation Version Name", a.implementation_version_name),
                        ],
                    )
                ],
            ),
            Section(
                "Timeouts",
                [
                    Table(
                        ("timeout", "seconds", "what"),
                        [
                            ("ACSE", f"{a.acse_timeout:g}", "to receive A-ASSOCIATE-RQ or -AC"),
                            ("network", f"{a.network_timeout:g}", "silence aborting"),
                            ("DIMSE", f"{a.dimse_timeout:g}", "waiting for a DIMSE response"),
                        ],
                    )
                ],
            ),
        ],
    )


ANNEX_OF_SET = {"storage": "Annex A", "common storage": "Annex C"}


def _proposed_row(context: ProposedContext) -> tuple[str, ...]:
    annex = ANNEX_OF_SET.get(context.sop_class_set, "Annexes")
    classes = (
        _names(context.sop_classes) or f"a class of the '{context.sop_class_set}' set ({annex})"
    )
    syntaxes = _names(context.transfer_syntaxes) or context.note
    note = context.note if context.transfer_syntaxes else ""
    return (classes, syntaxes, context.role, note)


def _activity(activity: Activity) -> Section:
    return Section(
        f"Activity: {activity.name}",
        [
            activity.description,
            Table(
                ("abstract syntax", "transfer syntaxes", "role", "note"),
                [_proposed_row(context) for context in activity.contexts],
                "Proposed presentation contexts",
            ),
        ],
    )


def _initiation(s: Statement) -> Section:
    return Section(
        "Association Initiation Policy",
        [
            "Every association the node opens uses its AE title, implementation "
            "identification, maximum PDU size and timeouts, and TLS toward remote AEs "
            "configured with tls = true.",
            *(_activity(activity) for activity in s.activities),
        ],
    )


def _acceptance(s: Statement) -> Section:
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
                _yes(key.case_insensitive),
                _yes(key.unique),
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
            f"{_yes(q.case_insensitive).lower()}. C-FIND spanning to: {spanning}; C-MOVE "
            f"spanning: {_yes(q.move_spanning).lower()}.",
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
                    f"{_yes(w.ian_on_mpps_completed).lower()}; when a study is quiet for: "
                    f"{stable}.",
                ],
            ),
        ],
    )


def _interfaces(s: Statement) -> Section:
    tls = s.security.tls_port
    return Section(
        "Network Interfaces",
        [
            "TCP/IP over whatever physical network the host has; IPv4 and IPv6 as the "
            f"bind address allows. DIMSE on port {s.dicom_port}"
            + (f", DICOM TLS on port {tls}." if tls else "; no TLS port."),
        ],
    )


def _settings_table(settings: Sequence[Setting]) -> Table:
    return Table(("setting", "value", "meaning"), [(x.name, x.value, x.meaning) for x in settings])


def _configuration(s: Statement) -> Section:
    remotes = [
        (
            r.ae_title,
            r.host,
            str(r.port),
            _yes(r.tls),
            ", ".join(r.offers) or "all",
            ", ".join(r.allowed) or "all",
        )
        for r in s.remote_aes
    ]
    return Section(
        "Configuration",
        [
            Section(
                "AE Title/Presentation Address Mapping",
                [
                    f"Local: {s.ae_title} on port {s.dicom_port}. Remote AEs:",
                    Table(("AE title", "host", "port", "TLS", "offers", "allowed"), remotes),
                ],
            ),
            Section("Parameters", [_settings_table(s.configuration)]),
            Section(
                "Rules of the Current Configuration",
                [Table(("subject", "rule"), [(d.subject, d.rule) for d in s.differences])],
            ),
        ],
    )


def _dicomweb(s: Statement) -> Section:
    if not s.dicomweb:
        return Section("DICOMweb Services", ["The HTTP door is off (http_port = 0)."])
    return Section(
        "DICOMweb Services",
        [
            f"PS3.18 services under {s.dicomweb_url} (WADO-URI at /wado), authenticated "
            f"as http_auth = {s.security.http_auth} says.",
            Table(
                ("service", "method", "resource", "media types"),
                [(r.service, r.method, r.path, ", ".join(r.media_types)) for r in s.dicomweb],
            ),
        ],
    )


def _media(s: Statement) -> Section:
    return Section(
        "Media Interchange",
        [
            "File-sets with a DICOMDIR are written ('pacsnode export-media', the media API), "
            "updated (--update) and read ('pacsnode import'); objects in a syntax the "
            "profile does not allow are decompressed on the way out.",
            Table(
                ("profile", "roles", "transfer syntaxes"),
                [(p.name, ", ".join(p.roles), _names(p.transfer_syntaxes)) for p in s.media],
            ),
        ],
    )


def _character_sets(s: Statement) -> Section:
    return Section(
        "Support of Character Sets",
        [
            "Objects are stored in their own Specific Character Set; requests are decoded "
            "in theirs. These defined terms are understood:",
            Bullets(list(s.character_sets)),
            f"C-FIND and worklist answers are encoded in {s.query.response_character_set}.",
        ],
    )


def _security(s: Statement) -> Section:
    sec = s.security
    tls = (
        f"DICOM TLS on port {sec.tls_port} (PS3.15 Annex B, BCP 195): "
        f"{', '.join(sec.tls_versions)}; client certificates {sec.client_certificates}."
        if sec.tls_port
        else "No DICOM TLS port is configured; associations to remote AEs with tls = true "
        "still use TLS."
    )
    return Section(
        "Security",
        [
            Section("TLS", [tls, "Cipher suites:", Bullets(list(sec.tls_ciphers))]),
            Section("Access Control", [_settings_table(sec.access_control)]),
            Section("Audit Trail", [_settings_table(sec.audit)]),
            Section(
                "HTTP",
                [
                    f"HTTP authentication: {sec.http_auth}; HTTPS: {_yes(sec.http_tls).lower()}. "
                    "Roles viewer, operator and admin decide what a user may do."
                ],
            ),
        ],
    )


def _annexes(s: Statement) -> Section:
    accepted = {c.sop_class.uid for c in s.accepted}
    storage = s.sop_class_sets["storage"]
    sets = [
        Section(
            f"Transfer syntax set '{name}'",
            [Table(("transfer syntax", "UID"), [(ts.name, ts.uid) for ts in syntaxes])],
        )
        for name, syntaxes in s.transfer_syntax_sets.items()
    ]
    return Section(
        "Annexes",
        [
            Section(
                "Annex A: Storage SOP Classes",
                [
                    Table(
                        ("SOP class", "UID", "accepted (SCP)", "sent (SCU)"),
                        [(c.name, c.uid, _yes(c.uid in accepted), "Yes") for c in storage],
                    )
                ],
            ),
            Section("Annex B: Transfer Syntax Sets", list(sets)),
            Section(
                "Annex C: Common Storage SOP Classes",
                [
                    "Proposed in the SCP role by a C-GET that does not know what it will receive:",
                    Bullets([_uid(c) for c in s.sop_class_sets["common storage"]]),
                ],
            ),
        ],
    )
