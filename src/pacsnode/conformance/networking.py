"""The Networking section of the statement (PS3.2 A.4): implementation model, the AE's
SOP classes and association policies, what it proposes, network interfaces,
configuration and DICOMweb. What it accepts is in :mod:`.acceptance`."""

from __future__ import annotations

from pacsnode.conformance.acceptance import acceptance
from pacsnode.conformance.blocks import Bullets, Section, Table, names, settings_table, yes
from pacsnode.conformance.model import Activity, ProposedContext, Statement


def networking(s: Statement) -> Section:
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
                    acceptance(s),
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
        (service.sop_class.name, service.sop_class.uid, yes(service.scu), yes(service.scp))
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
        names(context.sop_classes) or f"a class of the '{context.sop_class_set}' set ({annex})"
    )
    syntaxes = names(context.transfer_syntaxes) or context.note
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


def _configuration(s: Statement) -> Section:
    remotes = [
        (
            r.ae_title,
            r.host,
            str(r.port),
            yes(r.tls),
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
            Section("Parameters", [settings_table(s.configuration)]),
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
