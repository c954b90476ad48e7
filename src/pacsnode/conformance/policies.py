"""The policies of the conformance statement: matching keys, statuses, security,
configuration and what the configuration changes, each read from where it lives
(the index's attribute list, the status table, the TLS cipher string, the settings)."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword

from pacsnode import status
from pacsnode.archive.attributes import ATTRIBUTES, BY_KEYWORD, Kind, kind_of_vr
from pacsnode.archive.matching import COMPUTED, UNIQUE_KEYS
from pacsnode.archive.uids import STORAGE_TRANSFER_SYNTAXES
from pacsnode.config import RemoteAE, Settings
from pacsnode.conformance import changes
from pacsnode.conformance.model import (
    Difference,
    Key,
    MediaProfile,
    QueryPolicy,
    RemoteNode,
    Security,
    Setting,
    Status,
    WebResource,
    Workflow,
    named,
)
from pacsnode.dimse import catalog
from pacsnode.dimse.tls import BCP195_CIPHERS
from pacsnode.media.dicomdir import EXPLICIT_VR_LITTLE_ENDIAN, PROFILES
from pacsnode.web.schemas import OPERATIONS

MATCHING: dict[Kind, tuple[str, ...]] = {
    Kind.UID: ("single value", "list of UID", "universal"),
    Kind.DATE: ("single value", "range", "universal"),
    Kind.TIME: ("single value", "range", "universal"),
    Kind.DATETIME: ("single value", "range", "universal"),
    Kind.INT: ("single value", "universal"),
    Kind.TEXT: ("single value", "wild card", "universal"),
    Kind.NAME: ("single value", "wild card", "universal"),
    Kind.SEQUENCE: ("sequence",),
}
"""How :func:`pacsnode.archive.matching.value_condition` matches each kind of key."""
MODALITIES_IN_STUDY = ("single value", "wild card", "list (any of them)", "universal")
ANSWERED = ("RetrieveAETitle", "InstanceAvailability")
"""Keys answered by the node itself: where to retrieve from, and that it is online."""

WORKLIST_KEYS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "ReferringPhysicianName",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "StudyInstanceUID",
    "ScheduledProcedureStepSequence",
    "ScheduledProcedureStepSequence.Modality",
    "ScheduledProcedureStepSequence.ScheduledStationAETitle",
    "ScheduledProcedureStepSequence.ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepSequence.ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepSequence.ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepSequence.ScheduledProcedureStepID",
    "ScheduledProcedureStepSequence.ScheduledProcedureStepDescription",
    "ScheduledProcedureStepSequence.ScheduledProcedureStepStatus",
)
"""The keys modalities use (IHE Scheduled Workflow); every attribute of an item is a
matching key, matched by its VR the same way."""


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword.rsplit(".", 1)[-1])
    assert tag is not None, keyword
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def query(settings: Settings) -> QueryPolicy:
    return QueryPolicy(
        relational=True,
        combined_datetime=True,
        case_insensitive=settings.case_insensitive_matching,
        response_character_set=settings.response_character_set,
        find_spanning=settings.find_spanning,
        move_spanning=settings.move_spanning,
    )


def query_keys(settings: Settings) -> tuple[Key, ...]:
    """Every key the index matches, level by level, then the keys only returned."""
    folds = settings.case_insensitive_matching
    keys = [
        Key(
            attr.keyword,
            _tag(attr.keyword),
            level.value,
            MATCHING[attr.kind],
            folds and attr.has_folded_copy,
            UNIQUE_KEYS[level] == attr.keyword,
        )
        for level, attributes in ATTRIBUTES.items()
        for attr in attributes
    ]
    for keyword, (level, _column) in COMPUTED.items():
        matching = MODALITIES_IN_STUDY if keyword == "ModalitiesInStudy" else ()
        keys.append(Key(keyword, _tag(keyword), level.value, matching, folds and bool(matching)))
    keys += [Key(keyword, _tag(keyword), "any", ()) for keyword in ANSWERED]
    return tuple(keys)


def worklist_keys(settings: Settings) -> tuple[Key, ...]:
    keys = []
    for path in WORKLIST_KEYS:
        keyword = path.rsplit(".", 1)[-1]
        vr = dictionary_VR(keyword)
        kind = Kind.SEQUENCE if vr == "SQ" else kind_of_vr(vr)
        listed = BY_KEYWORD.get(keyword)
        folds = kind is Kind.NAME or (listed is not None and listed.fold_case)
        level = "Scheduled Procedure Step" if "." in path else "item"
        name = path.replace(".", " > ")
        keys.append(
            Key(
                name,
                _tag(path),
                level,
                MATCHING[kind],
                settings.case_insensitive_matching and folds,
            )
        )
    return tuple(keys)


def workflow(settings: Settings, remotes: Sequence[RemoteAE]) -> Workflow:
    return Workflow(
        commitment_reports=tuple((r.ae_title, r.commitment_report) for r in remotes),
        worklist_hide_finished=settings.worklist_hide_finished,
        mpps_destinations=settings.mpps_destinations,
        mpps_keep_calling_ae=settings.mpps_keep_calling_ae,
        ian_subscribers=settings.ian_subscribers,
        ian_on_mpps_completed=settings.ian_on_mpps_completed,
        ian_study_stable_seconds=settings.ian_study_stable_seconds,
        hl7_port=settings.hl7_port,
    )


def _status(service: str, code: int, when: str) -> Status:
    return Status(service, f"{code:04X}", status.name(code), when)


STATUSES = (
    _status("C-STORE", status.SUCCESS, "stored: the file is on disk and indexed"),
    _status("C-STORE", status.ELEMENTS_DISCARDED, "a copy of an instance rejected by IOCM"),
    _status("C-STORE", status.DUPLICATE_SOP_INSTANCE, "received again, duplicate_policy refuse"),
    _status("C-STORE", status.PROCESSING_FAILURE, "an unexpected error while storing"),
    _status("C-STORE", status.OUT_OF_RESOURCES, "disk full, or the index unavailable"),
    _status("C-STORE", status.DOES_NOT_MATCH_SOP_CLASS, "data set of another SOP class"),
    _status("C-STORE", status.CANNOT_UNDERSTAND, "unparsable, truncated or missing UIDs"),
    _status("C-FIND", status.PENDING, "a match"),
    _status("C-FIND", status.PENDING_WARNING, "a match; some keys are not supported"),
    _status("C-FIND", status.SUCCESS, "all matches sent"),
    _status("C-FIND", status.CANCEL, "after C-CANCEL"),
    _status("C-FIND", status.OUT_OF_RESOURCES, "the index unavailable"),
    _status("C-FIND", status.DOES_NOT_MATCH_SOP_CLASS, "an identifier outside the model"),
    _status("C-FIND", status.UNABLE_TO_PROCESS, "an identifier that does not decode"),
    _status("C-MOVE, C-GET", status.PENDING, "sub-operations going on, with their counts"),
    _status("C-MOVE, C-GET", status.SUCCESS, "every sub-operation succeeded"),
    _status("C-MOVE, C-GET", status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES, "some failed"),
    _status("C-MOVE, C-GET", status.CANCEL, "after C-CANCEL"),
    _status("C-MOVE, C-GET", status.UNABLE_TO_PERFORM_SUB_OPERATIONS, "destination unreachable"),
    _status("C-MOVE, C-GET", status.UNABLE_TO_CALCULATE_MATCHES, "the index unavailable"),
    _status("C-MOVE", status.MOVE_DESTINATION_UNKNOWN, "the destination is no remote AE"),
    _status("C-MOVE, C-GET", status.DOES_NOT_MATCH_SOP_CLASS, "an identifier outside the model"),
    _status("N-ACTION", status.SUCCESS, "commitment request taken; the report follows"),
    _status("N-ACTION", status.MISSING_ATTRIBUTE, "no Transaction UID or references"),
    _status("N-ACTION", status.NO_SUCH_ACTION, "an action type other than 1"),
    _status("N-EVENT-REPORT", status.NO_SUCH_OBJECT_INSTANCE, "failure reason: not held"),
    _status("N-EVENT-REPORT", status.CLASS_INSTANCE_CONFLICT, "failure reason: other class"),
    _status("N-EVENT-REPORT", status.PROCESSING_FAILURE, "failure reason: checksum differs"),
    _status("N-CREATE, N-SET", status.SUCCESS, "procedure step created or changed"),
    _status("N-CREATE, N-SET", status.PROCESSING_FAILURE, "the step cannot be kept"),
    _status("any", status.NOT_AUTHORIZED, "a service the calling AE is not allowed"),
)


def character_sets() -> tuple[str, ...]:
    """The Specific Character Sets requests and objects may use: what pydicom decodes."""
    return tuple(term for term in python_encoding if term)


def dicomweb_url(settings: Settings) -> str:
    if not settings.http_port:
        return ""
    if settings.public_url:
        return settings.public_url.rstrip("/") + "/dicom-web"
    scheme = "https" if settings.http_tls else "http"
    return f"{scheme}://{settings.http_bind_address}:{settings.http_port}/dicom-web"


def _web_service(method: str, path: str) -> str:
    if path.startswith("/wado"):
        return "WADO-URI"
    if method == "POST":
        return "STOW-RS"
    if path.endswith(("/rendered", "/thumbnail")):
        return "WADO-RS rendered"
    if path.endswith(("/studies", "/series", "/instances")):
        return "QIDO-RS"
    return "WADO-RS"


def dicomweb() -> tuple[WebResource, ...]:
    """The DICOMweb and WADO-URI resources, as the OpenAPI table describes the routes."""
    resources = []
    for (method, path), operation in sorted(OPERATIONS.items(), key=lambda item: item[0][1]):
        if not path.startswith(("/dicom-web", "/wado")):
            continue
        types = {t for code, (_schema, ts) in operation.responses.items() for t in ts if code < "3"}
        resources.append(
            WebResource(
                _web_service(method, path),
                method,
                path.removeprefix("/dicom-web"),
                tuple(sorted(types)),
            )
        )
    return tuple(resources)


def media() -> tuple[MediaProfile, ...]:
    order = {uid: number for number, uid in enumerate(STORAGE_TRANSFER_SYNTAXES)}
    return tuple(
        MediaProfile(
            name,
            ("FSC", "FSU", "FSR"),
            tuple(
                named(uid)
                for uid in sorted({EXPLICIT_VR_LITTLE_ENDIAN, *extra}, key=order.__getitem__)
            ),
        )
        for name, extra in PROFILES.items()
    )


def _ciphers() -> tuple[str, ...]:
    """The suites our TLS contexts allow: TLS 1.3's and BCP 195's TLS 1.2 ones."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(BCP195_CIPHERS)
    return tuple(cipher["name"] for cipher in context.get_ciphers())


def _words(values: Sequence[str], empty: str) -> str:
    return ", ".join(values) if values else empty


def security(settings: Settings) -> Security:
    if settings.tls_require_client_certificate:
        certificates = "required, signed by a CA of tls_ca_certificates"
    elif settings.tls_ca_certificates:
        certificates = "checked against tls_ca_certificates when presented"
    else:
        certificates = "not asked for"
    return Security(
        tls_port=settings.tls_port,
        tls_versions=("TLS 1.2", "TLS 1.3"),
        tls_ciphers=_ciphers(),
        client_certificates=certificates,
        http_tls=settings.http_tls,
        http_auth=settings.http_auth,
        access_control=(
            Setting(
                "check_called_ae",
                str(settings.check_called_ae).lower(),
                "another called AE title is rejected (called AE title not recognized)",
            ),
            Setting(
                "unknown_calling_ae",
                settings.unknown_calling_ae,
                "reject: a calling AE title that is no remote AE is rejected",
            ),
            Setting(
                "unknown_ae_allowed",
                _words(settings.unknown_ae_allowed, "all services"),
                "what an accepted unknown AE may ask; others are answered 0124",
            ),
            Setting(
                "max_associations",
                str(settings.max_associations),
                "more are rejected-transient, local limit exceeded",
            ),
        ),
        audit=(
            Setting(
                "audit_syslog",
                settings.audit_syslog or "off",
                "IHE ATNA messages (DICOM PS3.15 A.5) as RFC 5424 syslog",
            ),
            Setting(
                "audit_log",
                str(settings.audit_log).lower(),
                "every audit message also kept in data_dir/audit/",
            ),
        ),
    )


def remote_nodes(remotes: Sequence[RemoteAE]) -> tuple[RemoteNode, ...]:
    return tuple(
        RemoteNode(r.ae_title, r.host, r.port, r.tls, r.offers, r.allowed) for r in remotes
    )


CONFIGURABLE = (
    ("ae_title", "our AE title, called and calling"),
    ("dicom_port", "the DIMSE port"),
    ("tls_port", "the DICOM TLS port; 0 is off"),
    ("bind_address", "the address the DIMSE ports listen on"),
    ("max_pdu_size", "the largest PDU we receive, announced in A-ASSOCIATE; 0 is unlimited"),
    ("max_associations", "associations served at once, across all workers"),
    ("acse_timeout", "seconds to receive an A-ASSOCIATE-RQ, or an answer to ours"),
    ("network_timeout", "seconds of silence that abort an association"),
    ("dimse_timeout", "seconds we wait for a DIMSE response"),
    ("transfer_syntax_choice", "proposer: the proposer's order wins; ours: ours does"),
    ("workers", "processes serving the ports together; 0 is one per core"),
    ("duplicate_policy", "a SOP Instance UID received again: keep, overwrite, refuse"),
    ("rejected_store_answer", "the answer to a copy of an IOCM-rejected instance"),
    ("response_character_set", "the character set of C-FIND and worklist answers"),
    ("case_insensitive_matching", "names and the listed keys match regardless of case"),
    ("job_workers", "threads that send what the node sends on its own"),
    ("job_max_attempts", "attempts of a job before it is kept as failed"),
    ("job_retry_delay", "seconds before a failed job's first retry, doubling"),
    ("http_port", "DICOMweb, WADO-URI and the REST API; 0 is off"),
    ("http_auth", "none, basic or oauth2"),
)


def configuration(settings: Settings) -> tuple[Setting, ...]:
    return tuple(
        Setting(name, str(getattr(settings, name)), meaning) for name, meaning in CONFIGURABLE
    )


def differences(settings: Settings, remotes: Sequence[RemoteAE]) -> tuple[Difference, ...]:
    """What the configuration makes the node do, in words: the rules a peer meets."""
    found = changes.differences(settings, remotes)
    found.append(Difference("duplicates", _duplicates(settings.duplicate_policy)))
    found += _storage_restrictions(settings)
    if settings.transfer_syntax_choice == "ours":
        found.append(Difference("transfer syntax", "our order wins over the proposer's"))
    if not settings.case_insensitive_matching:
        found.append(Difference("matching", "every key matches case-sensitively"))
    if settings.rejected_store_answer == "failure":
        found.append(Difference("IOCM", "a copy of a rejected instance is refused with C000"))
    if not settings.worklist_hide_finished:
        found.append(Difference("worklist", "items of finished procedure steps are returned"))
    found += _access(settings)
    for remote in remotes:
        found += _remote_rules(remote)
    return tuple(found)


def _duplicates(policy: str) -> str:
    return {
        "keep": "a SOP Instance UID received again is acknowledged and the first copy kept",
        "overwrite": "a SOP Instance UID received again replaces the copy held",
        "refuse": "a SOP Instance UID received again is refused with 0111",
    }[policy]


def _storage_restrictions(settings: Settings) -> list[Difference]:
    found = []
    if settings.storage_sop_classes:
        count = len(catalog.storage_sop_classes(settings))
        found.append(
            Difference("storage", f"only the {count} storage SOP classes of storage_sop_classes")
        )
    if settings.storage_transfer_syntaxes:
        names = ", ".join(named(uid).name for uid in catalog.storage_transfer_syntaxes(settings))
        found.append(Difference("storage", f"storage contexts accept only {names}"))
    return found


def _access(settings: Settings) -> list[Difference]:
    found = []
    if settings.check_called_ae:
        found.append(Difference("access", f"only the called AE title {settings.ae_title}"))
    if settings.unknown_calling_ae == "reject":
        found.append(Difference("access", "calling AE titles that are no remote AE are rejected"))
    if settings.unknown_ae_allowed:
        allowed = ", ".join(settings.unknown_ae_allowed)
        found.append(Difference("access", f"unknown calling AEs may use only {allowed}"))
    if settings.find_spanning:
        spans = ", ".join(settings.find_spanning)
        found.append(Difference("C-FIND", f"every Q/R C-FIND is also sent to {spans}"))
    if settings.move_spanning:
        found.append(Difference("C-MOVE", "a C-MOVE called as a remote's AE title goes there"))
    return found


def _remote_rules(remote: RemoteAE) -> list[Difference]:
    title = remote.ae_title
    found = []
    if remote.allowed:
        found.append(Difference(f"access {title}", f"may use only {', '.join(remote.allowed)}"))
    if remote.check_host:
        found.append(Difference(f"access {title}", f"accepted only from {remote.host}"))
    if remote.visible:
        rules = ", ".join(f"{k} = {v}" for k, v in remote.visible)
        found.append(Difference(f"visibility {title}", f"sees only studies matching {rules}"))
    if remote.duplicate_policy is not None:
        found.append(Difference(f"duplicates {title}", _duplicates(remote.duplicate_policy)))
    if not remote.pending_responses:
        found.append(Difference(f"C-MOVE {title}", "gets no pending responses"))
    return found
