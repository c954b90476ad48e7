"""The conformance statement as data: what :mod:`.build` reads from the running node.

Plain frozen dataclasses, so that the JSON form is :func:`dataclasses.asdict` and the
document renderers read the same values. Transfer syntax and SOP class lists that many
contexts share (the storage syntaxes, the storage classes) are named sets, referred to
by name: 226 classes with 38 syntaxes each would otherwise repeat 8,000 UIDs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacsnode.archive.uids import uid_name


@dataclass(frozen=True)
class Uid:
    uid: str
    name: str


def named(uid: str) -> Uid:
    """A UID with its name from pydicom's dictionary (or ours, for newer ones)."""
    return Uid(uid, uid_name(uid))


@dataclass(frozen=True)
class Service:
    """A row of the Network Services overview."""

    group: str
    sop_class: Uid
    scu: bool
    scp: bool


@dataclass(frozen=True)
class AcceptedContext:
    """What the node accepts for one abstract syntax when another node asks."""

    sop_class: Uid
    transfer_syntaxes: str
    """The name of a set of :attr:`Statement.transfer_syntax_sets`, in our order."""
    roles: tuple[str, ...]
    """Our roles: SCP (the requestor invokes), SCU (the requestor took the SCP role)."""
    extended_negotiation: str = ""


@dataclass(frozen=True)
class ProposedContext:
    """A presentation context the node proposes when it opens an association."""

    sop_classes: tuple[Uid, ...]
    transfer_syntaxes: tuple[Uid, ...]
    role: str
    """Our role: SCU, or SCP where we ask for it by role selection."""
    sop_class_set: str = ""
    """A set of :attr:`Statement.sop_class_sets` the class comes from, when it is one of many."""
    note: str = ""
    extended_negotiation: str = ""


@dataclass(frozen=True)
class Activity:
    """A real-world activity for which the node opens associations."""

    name: str
    description: str
    contexts: tuple[ProposedContext, ...]


@dataclass(frozen=True)
class AssociationPolicy:
    application_context: str
    implementation_class_uid: str
    implementation_version_name: str
    max_pdu_receive: int
    """0 is unlimited."""
    max_associations: int
    max_contexts_proposed: int
    transfer_syntax_choice: str
    acse_timeout: float
    network_timeout: float
    dimse_timeout: float
    workers: int
    """Worker processes serving the ports together; 0 is one per CPU core."""


@dataclass(frozen=True)
class QueryModel:
    name: str
    find: Uid
    move: Uid
    get: Uid
    levels: tuple[str, ...]


@dataclass(frozen=True)
class Key:
    """A Query/Retrieve or worklist key: how it matches, or that it is only returned."""

    keyword: str
    tag: str
    level: str
    matching: tuple[str, ...]
    """Matching types (PS3.4 C.2.2.2); empty for a key that is returned only."""
    case_insensitive: bool = False
    unique: bool = False


@dataclass(frozen=True)
class QueryPolicy:
    relational: bool
    combined_datetime: bool
    case_insensitive: bool
    response_character_set: str
    find_spanning: tuple[str, ...]
    move_spanning: bool


@dataclass(frozen=True)
class Workflow:
    commitment_reports: tuple[tuple[str, str], ...]
    """Remote AE title to where its reports go (same, new, same_if_open); others: same."""
    worklist_hide_finished: bool
    mpps_destinations: tuple[str, ...]
    mpps_keep_calling_ae: bool
    ian_subscribers: tuple[str, ...]
    ian_on_mpps_completed: bool
    ian_study_stable_seconds: float
    hl7_port: int


@dataclass(frozen=True)
class Status:
    service: str
    code: str
    meaning: str
    when: str


@dataclass(frozen=True)
class Setting:
    name: str
    value: str
    meaning: str


@dataclass(frozen=True)
class Difference:
    """A way the current configuration makes the node behave other than by default."""

    subject: str
    rule: str


@dataclass(frozen=True)
class RemoteNode:
    """A row of the AE title / presentation address mapping."""

    ae_title: str
    host: str
    port: int
    tls: bool
    offers: tuple[str, ...]
    allowed: tuple[str, ...]


@dataclass(frozen=True)
class WebResource:
    service: str
    method: str
    path: str
    media_types: tuple[str, ...]


@dataclass(frozen=True)
class MediaProfile:
    name: str
    roles: tuple[str, ...]
    transfer_syntaxes: tuple[Uid, ...]


@dataclass(frozen=True)
class Security:
    tls_port: int
    tls_versions: tuple[str, ...]
    tls_ciphers: tuple[str, ...]
    client_certificates: str
    http_tls: bool
    http_auth: str
    access_control: tuple[Setting, ...]
    audit: tuple[Setting, ...]


@dataclass(frozen=True)
class Deidentification:
    """What the de-identified exports apply (PS3.15 Annex E)."""

    profile: str
    table: str
    options: tuple[str, ...]
    doors: tuple[str, ...]
    safe_private: tuple[tuple[str, str, str, str], ...]
    """Table E.3.10-1: private creator, tag, VR, meaning."""


@dataclass(frozen=True)
class Statement:
    product: str
    version: str
    generated: str
    ae_title: str
    dicom_port: int
    services: tuple[Service, ...]
    transfer_syntax_sets: dict[str, tuple[Uid, ...]]
    sop_class_sets: dict[str, tuple[Uid, ...]]
    accepted: tuple[AcceptedContext, ...]
    activities: tuple[Activity, ...]
    association: AssociationPolicy
    query_models: tuple[QueryModel, ...]
    query: QueryPolicy
    query_keys: tuple[Key, ...]
    worklist_keys: tuple[Key, ...]
    workflow: Workflow
    statuses: tuple[Status, ...]
    character_sets: tuple[str, ...]
    dicomweb_url: str
    dicomweb: tuple[WebResource, ...]
    media: tuple[MediaProfile, ...]
    security: Security
    deidentification: Deidentification
    remote_aes: tuple[RemoteNode, ...]
    configuration: tuple[Setting, ...]
    differences: tuple[Difference, ...]
