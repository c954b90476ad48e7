"""What each HTTP operation takes and answers, as JSON Schema for the OpenAPI
description: one table, :data:`OPERATIONS`, keyed by method and path.

The shapes of the configuration entries (remote AEs, routes, printers) are made by
pydantic from the dataclasses of :mod:`pacsnode.config`, and those of the archive's
entities from the attributes the index keeps, so they follow the code; the rest are
written here beside the endpoints' replies. A test checks that every route has an
entry, so a new endpoint cannot go undescribed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from pacsnode.archive.attributes import BY_KEYWORD, Kind, Level
from pacsnode.archive.browse import MAX_LIMIT, RESOURCES, keywords_of
from pacsnode.archive.matching import COMPUTED
from pacsnode.config import Authority, Printer, RemoteAE, RouteRule
from pacsnode.conformance.model import Statement
from pacsnode.conformance.render import FORMATS, MEDIA_TYPES

Schema = dict[str, Any]
JSON = "application/json"
DICOM_JSON = "application/dicom+json"
MULTIPART = "multipart/related"
ZIP = "application/zip"
IMAGES = ("image/jpeg", "image/png", "image/gif")

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ANY_OBJECT: Schema = {"type": "object"}
BINARY: Schema = {"type": "string", "format": "binary"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


UIDS = {"anyOf": [STRING, array(STRING)], "description": "A UID or a list of UIDs"}
TEXT_OR_LIST = {"anyOf": [STRING, array(STRING), {"type": "null"}]}


def _from_dataclass(cls: type[Any], *, source: bool = False) -> Schema:
    """A config dataclass's schema as its JSON shows it: keyword = value tables as
    objects, and where the entry comes from when it is listed."""
    schema = TypeAdapter(cls).json_schema()
    schema.pop("title", None)
    for name in ("visible", "match"):
        if name in schema["properties"]:
            schema["properties"][name] = {
                "type": "object",
                "additionalProperties": STRING,
                "description": "Attribute keyword = DICOM matching value",
            }
    for value in schema["properties"].values():
        value.pop("title", None)
    if source:
        schema["properties"]["source"] = STRING
    return schema


def _entity(level: Level) -> Schema:
    """An entity of the archive in keyword JSON (see archive/browse.py)."""
    properties: dict[str, Schema] = {}
    for keyword in keywords_of(level):
        attribute = BY_KEYWORD.get(keyword)
        counted = keyword in COMPUTED and keyword != "ModalitiesInStudy"
        if counted or (attribute is not None and attribute.kind is Kind.INT):
            properties[keyword] = nullable(INTEGER)
        else:
            properties[keyword] = TEXT_OR_LIST
    if level is Level.IMAGE:
        properties["stored"] = obj(
            transfer_syntax_uid=STRING,
            bytes=INTEGER,
            received_at=nullable(TIME),
            source_ae=nullable(STRING),
        )
    return {"type": "object", "properties": properties}


_CHILD_LIST = {Level.PATIENT: "studies", Level.STUDY: "series", Level.SERIES: "instances"}
_NAMES = {Level.PATIENT: "Patient", Level.STUDY: "Study", Level.SERIES: "Series"}
_NAMES[Level.IMAGE] = "Instance"


def _entity_with_children(level: Level) -> Schema:
    schema = _entity(level)
    child = _CHILD_LIST.get(level)
    if child is not None:
        schema = {**schema, "properties": {**schema["properties"], child: array(STRING)}}
    return schema


def _conformance() -> dict[str, Schema]:
    """The statement's schema and those of its parts, made by pydantic from the model."""
    schema = TypeAdapter(Statement).json_schema(
        ref_template="#/components/schemas/Conformance{model}"
    )
    parts = schema.pop("$defs", {})
    return {"Conformance": schema, **{f"Conformance{name}": s for name, s in parts.items()}}


JOB = obj(
    id=INTEGER,
    kind=STRING,
    status={"enum": ["pending", "running", "done", "failed", "cancelled"]},
    description=STRING,
    attempts=INTEGER,
    max_attempts=INTEGER,
    next_run_at=TIME,
    last_error=nullable(STRING),
    created_at=TIME,
    updated_at=TIME,
    payload=ANY_OBJECT,
    result=nullable(ANY_OBJECT),
)
USER = obj(
    name=STRING,
    role={"enum": ["viewer", "operator", "admin"]},
    disabled=BOOLEAN,
    source=STRING,
    created_at=nullable(TIME),
)
TOKEN = obj(
    id=INTEGER,
    user=STRING,
    label=STRING,
    created_at=TIME,
    expires_at=nullable(TIME),
    last_used_at=nullable(TIME),
)
COMPONENTS: dict[str, Schema] = {
    "Error": obj(("error",), error=STRING, field=STRING),
    "Job": JOB,
    "JobQueued": obj(("id",), id=INTEGER, description=STRING, method=STRING),
    "RemoteAE": _from_dataclass(RemoteAE, source=True),
    "RemoteAEInput": _from_dataclass(RemoteAE),
    "Route": _from_dataclass(RouteRule, source=True),
    "RouteInput": _from_dataclass(RouteRule),
    "Printer": _from_dataclass(Printer),
    "Authority": _from_dataclass(Authority, source=True),
    "AuthorityInput": _from_dataclass(Authority),
    "PatientChange": obj(
        PatientName=STRING, PatientBirthDate=STRING, PatientSex=STRING, OtherPatientIDs=STRING
    ),
    "StudyChange": obj(
        StudyDescription=STRING, AccessionNumber=STRING, ReferringPhysicianName=STRING
    ),
    "MergeInto": obj(("PatientID",), PatientID=STRING, IssuerOfPatientID=STRING),
    "Updated": obj(
        target=STRING, changed={"type": "object", "additionalProperties": STRING}, studies=INTEGER
    ),
    "User": USER,
    "Token": TOKEN,
    "DicomJson": {"type": "object", "description": "A data set in the DICOM JSON model"},
    "Stats": obj(
        patients=INTEGER,
        studies=INTEGER,
        series=INTEGER,
        instances=INTEGER,
        hidden_instances=INTEGER,
        bytes=INTEGER,
        disk_free_bytes=INTEGER,
        disk_total_bytes=INTEGER,
    ),
    "System": obj(
        name=STRING,
        version=STRING,
        node=STRING,
        python=STRING,
        ae_title=STRING,
        dicom_port=INTEGER,
        tls_port=INTEGER,
        http_port=INTEGER,
        hl7_port=INTEGER,
        http_auth=STRING,
        config_file=nullable(STRING),
        data_dir=STRING,
        database=STRING,
        database_backend=STRING,
        remote_aes=INTEGER,
        routes=INTEGER,
        printers=INTEGER,
    ),
    "ClusterNode": obj(
        name=STRING,
        version=STRING,
        host=STRING,
        dicom_port=INTEGER,
        http_port=INTEGER,
        associations=INTEGER,
        started_at=TIME,
        heartbeat_at=TIME,
    ),
    "Cluster": obj(
        node=STRING,
        cluster=BOOLEAN,
        live_seconds={"type": "number"},
        nodes=array(ref("ClusterNode")),
    ),
    "Deleted": obj(
        level={"enum": ["patient", "study", "series", "instance"]},
        id=STRING,
        hard=BOOLEAN,
        instances=INTEGER,
        series=INTEGER,
        studies=array(STRING),
        bytes=INTEGER,
    ),
    "Restored": obj(
        level={"enum": ["patient", "study", "series", "instance"]},
        id=STRING,
        instances=INTEGER,
        series=INTEGER,
        studies=array(STRING),
    ),
    "ExportRequest": obj(
        deidentify={"type": "boolean", "default": True},
        options=array(
            {
                "enum": [
                    "retain-uids",
                    "retain-dates",
                    "retain-patient-characteristics",
                    "retain-device-identity",
                    "retain-institution-identity",
                    "clean-descriptors",
                    "retain-safe-private",
                ]
            }
        ),
        to={"enum": ["zip", "remote"], "default": "zip"},
        remote=STRING,
        series=array(STRING),
        profile=STRING,
    ),
    "Echo": obj(ae_title=STRING, status=STRING, ok=BOOLEAN, milliseconds=INTEGER),
    "QueryRequest": obj(
        model={"enum": ["patient", "study", "psonly", "mwl"], "default": "study"},
        level={"enum": ["PATIENT", "STUDY", "SERIES", "IMAGE"], "default": "STUDY"},
        keys={
            "type": "object",
            "additionalProperties": STRING,
            "description": "Keyword = matching value; an empty value asks for it back",
        },
    ),
    "QueryAnswer": obj(ae_title=STRING, matches=array(ANY_OBJECT)),
    "Selection": obj(("study",), study=STRING, series=UIDS, instances=UIDS),
    "RetrieveRequest": obj(
        ("study",),
        study=STRING,
        series=UIDS,
        instances=UIDS,
        method={"enum": ["move", "get"]},
        level={"enum": ["STUDY", "SERIES", "IMAGE"]},
    ),
    "PrintRequest": obj(
        ("printer",),
        printer=STRING,
        study=STRING,
        series=UIDS,
        instances=UIDS,
        layout=STRING,
        film_size=STRING,
        orientation=STRING,
        magnification=STRING,
        copies=INTEGER,
        color=BOOLEAN,
    ),
    "MediaRequest": obj(
        ("studies",),
        studies=array(STRING),
        series=array(STRING),
        profile=STRING,
        fileset_id=STRING,
        pdi=BOOLEAN,
    ),
    "UserInput": obj(("name", "password"), name=STRING, password=STRING, role=STRING),
    "UserChange": obj(role=STRING, password=STRING, disabled=BOOLEAN),
    "TokenRequest": obj(label=STRING, expires_days=INTEGER),
    "NewToken": {**TOKEN, "properties": {**TOKEN["properties"], "token": STRING}},
    "Me": obj(name=nullable(STRING), role=STRING, authenticated=BOOLEAN),
    "Rejected": obj(
        sop_instance_uid=STRING,
        sop_class_uid=STRING,
        code=STRING,
        meaning=STRING,
        note_sop_instance_uid=STRING,
        created_at=TIME,
    ),
    "Mpps": obj(
        sop_instance_uid=STRING,
        status=STRING,
        study_instance_uid=nullable(STRING),
        calling_ae=nullable(STRING),
        created_at=TIME,
        updated_at=TIME,
        dataset=ref("DicomJson"),
    ),
    "WorklistItem": obj(
        id=INTEGER,
        status=STRING,
        order_number=nullable(STRING),
        created_at=TIME,
        updated_at=TIME,
        dataset=ref("DicomJson"),
    ),
    "AuditMessage": obj(
        time=TIME,
        event=STRING,
        event_id=STRING,
        event_type=STRING,
        action=STRING,
        outcome=INTEGER,
        user=STRING,
        address=STRING,
        patients=array(STRING),
        studies=array(STRING),
        xml=STRING,
    ),
    **_conformance(),
    **{_NAMES[level]: _entity_with_children(level) for level in RESOURCES.values()},
    **{
        f"{_NAMES[level]}Page": obj(
            items=array(_entity(level)), total=INTEGER, limit=INTEGER, offset=INTEGER
        )
        for level in RESOURCES.values()
    },
}


Responses = dict[str, tuple[Schema | None, tuple[str, ...]]]


@dataclass(frozen=True)
class Operation:
    """What one method on one path takes (query parameters, a body) and answers."""

    responses: Responses
    """Status to the body's schema and its media types (``None``: no body)."""
    body: Schema | None = None
    body_types: tuple[str, ...] = (JSON,)
    query: tuple[Schema, ...] = ()
    tag: str = "REST API"
    errors: tuple[str, ...] = (JSON,)
    """How error answers come: ``{"error": …}`` JSON in /api, plain text in DICOMweb."""


def param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def ok(schema: Schema | None, *types: str, status: str = "200") -> Responses:
    return {status: (schema, types or (JSON,))}


PAGING = (
    param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
        "Page size",
    ),
    param("offset", {"type": "integer", "minimum": 0, "default": 0}, "Matches to skip"),
)
FILTERS = tuple(
    param(keyword, STRING, "DICOM matching: * and ? wildcards, date ranges (20240101-), UID lists")
    for keyword in (
        "PatientName",
        "PatientID",
        "StudyDate",
        "AccessionNumber",
        "ModalitiesInStudy",
        "Modality",
        "StudyDescription",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    )
)
HARD = param("hard", {"type": "integer", "enum": [0, 1], "default": 0}, "1: remove rows and files")
ISSUER = param("issuer", STRING, "Issuer of Patient ID, when several issuers use the Patient ID")
REASON = param(
    "reason",
    {"enum": ["113001", "113037", "113038", "113039"], "default": "113039"},
    "Rejection code the IOCM destinations are told",
)
QIDO = (
    param("includefield", STRING, "Attributes to return besides the defaults, or all"),
    param("limit", {"type": "integer", "minimum": 0}, "At most this many results"),
    param("offset", {"type": "integer", "minimum": 0}, "Skip this many results"),
    param("fuzzymatching", BOOLEAN, "Accepted; only literal matching is done"),
    param("federated", BOOLEAN, "Also ask the find_spanning archives"),
)
RENDER = (
    param("window", STRING, "center,width,function"),
    param("viewport", STRING, "width,height"),
    param("quality", INTEGER, "JPEG quality 1 to 100"),
)


def web(responses: Responses, query: tuple[Schema, ...] = (), **body: Any) -> Operation:
    """A DICOMweb or WADO-URI operation: its errors are plain text."""
    return Operation(responses, query=query, tag="DICOMweb", errors=("text/plain",), **body)


DICOM_PARTS = (f'{MULTIPART}; type="application/dicom"', ZIP)
CREATED = "201"
QUEUED = "202"
NO_CONTENT: Responses = {"204": (None, ())}


def _browse() -> dict[tuple[str, str], Operation]:
    table = {}
    for resource, level in RESOURCES.items():
        name = _NAMES[level]
        extra = (ISSUER,) if level is Level.PATIENT else ()
        table["GET", f"/api/{resource}"] = Operation(
            ok(ref(f"{name}Page")), query=(*PAGING, *FILTERS), tag="Archive"
        )
        table["GET", f"/api/{resource}/{{id}}"] = Operation(
            ok(ref(name)), query=extra, tag="Archive"
        )
        table["DELETE", f"/api/{resource}/{{id}}"] = Operation(
            ok(ref("Deleted")), query=(HARD, REASON, *extra), tag="Archive"
        )
        table["POST", f"/api/{resource}/{{id}}/restore"] = Operation(
            ok(ref("Restored")), query=extra, tag="Archive"
        )
    table["PATCH", "/api/patients/{id}"] = Operation(
        ok(ref("Updated")), body=ref("PatientChange"), query=(ISSUER,), tag="Archive"
    )
    table["PATCH", "/api/studies/{id}"] = Operation(
        ok(ref("Updated")), body=ref("StudyChange"), tag="Archive"
    )
    table["POST", "/api/patients/{id}/merge"] = Operation(
        ok(ref("Updated")), body=ref("MergeInto"), query=(ISSUER,), tag="Archive"
    )
    return table


def _dicomweb() -> dict[tuple[str, str], Operation]:
    table = {}
    studies, series = "/dicom-web/studies/{study}", "/dicom-web/studies/{study}/series/{series}"
    instance = f"{series}/instances/{{instance}}"
    searches = {
        "/dicom-web/studies",
        "/dicom-web/series",
        "/dicom-web/instances",
        f"{studies}/series",
        f"{studies}/instances",
        f"{series}/instances",
    }
    for path in searches:
        table["GET", path] = web(
            ok(array(ref("DicomJson")), DICOM_JSON, f'{MULTIPART}; type="application/dicom+xml"'),
            query=QIDO,
        )
    for path in (studies, series, instance):
        table["GET", path] = web(ok(BINARY, *DICOM_PARTS))
        table["GET", f"{path}/metadata"] = web(ok(array(ref("DicomJson")), DICOM_JSON))
        table["GET", f"{path}/rendered"] = web(ok(BINARY, *IMAGES), query=RENDER)
        table["GET", f"{path}/thumbnail"] = web(ok(BINARY, *IMAGES), query=RENDER)
    frames = f"{instance}/frames/{{frames}}"
    table["GET", frames] = web(ok(BINARY, f'{MULTIPART}; type="application/octet-stream"'))
    table["GET", f"{frames}/rendered"] = web(ok(BINARY, *IMAGES), query=RENDER)
    table["GET", f"{frames}/thumbnail"] = web(ok(BINARY, *IMAGES), query=RENDER)
    table["GET", f"{instance}/bulkdata/{{tag_path}}"] = web(
        ok(BINARY, f'{MULTIPART}; type="application/octet-stream"')
    )
    stow = web(
        {"200": (ref("DicomJson"), (DICOM_JSON,)), "202": (ref("DicomJson"), (DICOM_JSON,))},
        body=BINARY,
        body_types=(f'{MULTIPART}; type="application/dicom"', "application/dicom", DICOM_JSON),
    )
    table["POST", "/dicom-web/studies"] = stow
    table["POST", studies] = stow
    as_remote = "/dicom-web/aets/{ae_title}"
    for path in [*searches, studies, series, instance]:
        table["GET", path.replace("/dicom-web", as_remote)] = table["GET", path]
    for path in (studies, series, instance):
        metadata = f"{path}/metadata"
        table["GET", metadata.replace("/dicom-web", as_remote)] = table["GET", metadata]
    for path in (frames, f"{instance}/bulkdata/{{tag_path}}"):
        table["GET", path.replace("/dicom-web", as_remote)] = table["GET", path]
    table["GET", "/wado"] = web(
        ok(BINARY, "application/dicom", *IMAGES),
        query=tuple(
            param(name, STRING, text)
            for name, text in (
                ("requestType", "WADO"),
                ("studyUID", "Study Instance UID"),
                ("seriesUID", "Series Instance UID"),
                ("objectUID", "SOP Instance UID"),
                ("contentType", "application/dicom, image/jpeg, image/png or image/gif"),
                ("transferSyntax", "For application/dicom"),
            )
        ),
    )
    return table


def _admin() -> dict[tuple[str, str], Operation]:
    job_id = ok(ref("Job"))
    queued = ok(ref("JobQueued"), status=QUEUED)
    return {
        ("GET", "/api/stats"): Operation(ok(ref("Stats")), tag="Archive"),
        ("GET", "/api/system"): Operation(ok(ref("System")), tag="Archive"),
        ("GET", "/api/conformance"): Operation(
            ok({"anyOf": [ref("Conformance"), STRING]}, JSON, *MEDIA_TYPES.values()),
            query=(
                param(
                    "format",
                    {"enum": list(FORMATS), "default": "json"},
                    "json (the data), md (Markdown) or html (a page)",
                ),
            ),
            tag="Archive",
        ),
        ("GET", "/api/cluster"): Operation(ok(ref("Cluster")), tag="Archive"),
        ("GET", "/api/jobs"): Operation(
            ok(array(ref("Job"))),
            query=(param("status", STRING, "pending, running, done, failed or cancelled"),),
            tag="Jobs",
        ),
        ("GET", "/api/jobs/{id}"): Operation(job_id, tag="Jobs"),
        ("POST", "/api/jobs/{id}/retry"): Operation(job_id, tag="Jobs"),
        ("POST", "/api/jobs/{id}/cancel"): Operation(job_id, tag="Jobs"),
        ("GET", "/api/mpps"): Operation(ok(array(ref("Mpps"))), tag="Workflow"),
        ("GET", "/api/mpps/{uid}"): Operation(ok(ref("Mpps")), tag="Workflow"),
        ("GET", "/api/worklist"): Operation(ok(array(ref("WorklistItem"))), tag="Workflow"),
        ("POST", "/api/worklist"): Operation(
            ok(ref("WorklistItem"), status=CREATED), body=ref("DicomJson"), tag="Workflow"
        ),
        ("GET", "/api/worklist/{id}"): Operation(ok(ref("WorklistItem")), tag="Workflow"),
        ("PUT", "/api/worklist/{id}"): Operation(
            ok(ref("WorklistItem")), body=ref("DicomJson"), tag="Workflow"
        ),
        ("DELETE", "/api/worklist/{id}"): Operation(NO_CONTENT, tag="Workflow"),
        ("GET", "/api/rejected"): Operation(
            ok(array(ref("Rejected"))), query=(param("code", STRING, "A rejection code"),)
        ),
        ("POST", "/api/rejected/purge"): Operation(ok(obj(purged=INTEGER))),
        ("POST", "/api/rejected/{uid}/restore"): Operation(ok(obj(restored=STRING))),
        ("GET", "/api/remote"): Operation(ok(array(ref("RemoteAE"))), tag="Remote AEs"),
        ("GET", "/api/remote/{ae}"): Operation(ok(ref("RemoteAE")), tag="Remote AEs"),
        ("PUT", "/api/remote/{ae}"): Operation(
            {**ok(ref("RemoteAE")), **ok(ref("RemoteAE"), status=CREATED)},
            body=ref("RemoteAEInput"),
            tag="Remote AEs",
        ),
        ("DELETE", "/api/remote/{ae}"): Operation(NO_CONTENT, tag="Remote AEs"),
        ("GET", "/api/authorities"): Operation(ok(array(ref("Authority"))), tag="Remote AEs"),
        ("GET", "/api/authorities/{id}"): Operation(ok(ref("Authority")), tag="Remote AEs"),
        ("PUT", "/api/authorities/{id}"): Operation(
            {**ok(ref("Authority")), **ok(ref("Authority"), status=CREATED)},
            body=ref("AuthorityInput"),
            tag="Remote AEs",
        ),
        ("DELETE", "/api/authorities/{id}"): Operation(NO_CONTENT, tag="Remote AEs"),
        ("POST", "/api/remote/{ae}/retrieve"): Operation(
            queued, body=ref("RetrieveRequest"), tag="Remote AEs"
        ),
        ("POST", "/api/remote/{ae}/echo"): Operation(ok(ref("Echo")), tag="Remote AEs"),
        ("POST", "/api/remote/{ae}/query"): Operation(
            ok(ref("QueryAnswer")), body=ref("QueryRequest"), tag="Remote AEs"
        ),
        ("POST", "/api/remote/{ae}/store"): Operation(
            queued, body=ref("Selection"), tag="Remote AEs"
        ),
        ("GET", "/api/studies/{study}/media"): Operation(
            ok(BINARY, ZIP),
            query=(
                param("profile", STRING, "Media application profile, e.g. STD-GEN-CD"),
                param("fileset_id", STRING, "File-set ID"),
                param("pdi", BOOLEAN, "Add IHE PDI's README.TXT and INDEX.HTM"),
            ),
            tag="Archive",
        ),
        ("POST", "/api/media"): Operation(ok(BINARY, ZIP), body=ref("MediaRequest"), tag="Archive"),
        ("POST", "/api/studies/{study}/export"): Operation(
            {**ok(BINARY, ZIP), **ok(ref("JobQueued"), status=QUEUED)},
            body=ref("ExportRequest"),
            tag="Archive",
        ),
        ("POST", "/api/retention/run"): Operation(queued, tag="Archive"),
        ("GET", "/api/printers"): Operation(ok(array(ref("Printer"))), tag="Print"),
        ("POST", "/api/print"): Operation(queued, body=ref("PrintRequest"), tag="Print"),
        ("GET", "/api/routes"): Operation(ok(array(ref("Route"))), tag="Routing"),
        ("POST", "/api/routes"): Operation(
            ok(ref("Route"), status=CREATED), body=ref("RouteInput"), tag="Routing"
        ),
        ("PUT", "/api/routes/{name}"): Operation(
            ok(ref("Route")), body=ref("RouteInput"), tag="Routing"
        ),
        ("DELETE", "/api/routes/{name}"): Operation(NO_CONTENT, tag="Routing"),
        ("GET", "/api/me"): Operation(ok(ref("Me")), tag="Users"),
        ("GET", "/api/users"): Operation(ok(array(ref("User"))), tag="Users"),
        ("POST", "/api/users"): Operation(
            ok(ref("User"), status=CREATED), body=ref("UserInput"), tag="Users"
        ),
        ("GET", "/api/users/{name}"): Operation(ok(ref("User")), tag="Users"),
        ("PUT", "/api/users/{name}"): Operation(
            ok(ref("User")), body=ref("UserChange"), tag="Users"
        ),
        ("DELETE", "/api/users/{name}"): Operation(NO_CONTENT, tag="Users"),
        ("GET", "/api/tokens"): Operation(ok(array(ref("Token"))), tag="Users"),
        ("POST", "/api/tokens"): Operation(
            ok(ref("NewToken"), status=CREATED), body=ref("TokenRequest"), tag="Users"
        ),
        ("DELETE", "/api/tokens/{id}"): Operation(NO_CONTENT, tag="Users"),
        ("GET", "/api/audit"): Operation(
            ok(array(ref("AuditMessage"))),
            query=tuple(
                param(name, STRING, text)
                for name, text in (
                    ("event", "Event name, code or type"),
                    ("user", "User name or AE title"),
                    ("patient", "Patient ID"),
                    ("study", "Study Instance UID"),
                    ("since", "ISO 8601"),
                    ("until", "ISO 8601"),
                    ("limit", "At most this many, newest first"),
                )
            ),
            tag="Audit",
        ),
        ("GET", "/openapi.json"): Operation(ok(ANY_OBJECT), tag="Documentation"),
        ("GET", "/docs/"): Operation(ok(STRING, "text/html"), tag="Documentation"),
    }


OPERATIONS: dict[tuple[str, str], Operation] = {**_browse(), **_dicomweb(), **_admin()}
