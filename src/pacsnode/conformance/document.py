"""The statement laid out in the sections of PS3.2 Annex A, as blocks a renderer writes.

The overview, introduction, media, character sets, security and annexes are here; the
networking section is in :mod:`.networking`. The 226 storage SOP classes and the
transfer syntax sets go to annexes, named from the tables that use them, as vendors'
statements do.
"""

from __future__ import annotations

from pacsnode.conformance.blocks import (
    Bullets,
    Section,
    Table,
    names,
    settings_table,
    uid_text,
    yes,
)
from pacsnode.conformance.model import Statement
from pacsnode.conformance.networking import networking


def document(statement: Statement) -> list[Section]:
    return [
        _overview(statement),
        _introduction(statement),
        networking(statement),
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
            yes(accepted > 0),
        )
    ]
    rows += [
        (service.group, service.sop_class.name, yes(service.scu), yes(service.scp))
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


def _media(s: Statement) -> Section:
    return Section(
        "Media Interchange",
        [
            "File-sets with a DICOMDIR are written ('pacsnode export-media', the media API), "
            "updated (--update) and read ('pacsnode import'); objects in a syntax the "
            "profile does not allow are decompressed on the way out.",
            Table(
                ("profile", "roles", "transfer syntaxes"),
                [(p.name, ", ".join(p.roles), names(p.transfer_syntaxes)) for p in s.media],
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
            Section("Access Control", [settings_table(sec.access_control)]),
            Section("Audit Trail", [settings_table(sec.audit)]),
            Section(
                "HTTP",
                [
                    f"HTTP authentication: {sec.http_auth}; HTTPS: {yes(sec.http_tls).lower()}. "
                    "Roles viewer, operator and admin decide what a user may do."
                ],
            ),
            _deidentification(s),
        ],
    )


def _deidentification(s: Statement) -> Section:
    made = s.deidentification
    return Section(
        "De-identification",
        [
            f"{made.profile}, with the actions of {made.table}, on the copies made by "
            f"{', '.join(made.doors)}. Pseudonyms are consistent across a study. Options:",
            Bullets(list(made.options)),
            "Private attributes are removed, except, with the Retain Safe Private Option, "
            "those of Annex D.",
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
                        [(c.name, c.uid, yes(c.uid in accepted), "Yes") for c in storage],
                    )
                ],
            ),
            Section("Annex B: Transfer Syntax Sets", list(sets)),
            Section(
                "Annex C: Common Storage SOP Classes",
                [
                    "Proposed in the SCP role by a C-GET that does not know what it will receive:",
                    Bullets([uid_text(c) for c in s.sop_class_sets["common storage"]]),
                ],
            ),
            Section(
                "Annex D: Safe Private Attributes",
                [
                    "Kept by de-identification with the Retain Safe Private Option "
                    "(PS3.15 Table E.3.10-1):",
                    Table(
                        ("private creator", "tag", "VR", "meaning"),
                        list(s.deidentification.safe_private),
                    ),
                ],
            ),
        ],
    )
