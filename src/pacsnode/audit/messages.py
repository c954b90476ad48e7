"""DICOM PS3.15 A.5 audit messages: XML that the standard's schema (A.5.1) accepts.

Each builder returns a :class:`Message`: the XML for the collector, and the few facts
(who, which patients and studies) the local log keeps beside it so that it can be
searched without parsing XML. Element order matters to the schema; attribute order
does not.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

Action = Literal["C", "R", "U", "D", "E"]

SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12


@dataclass(frozen=True)
class Code:
    """A coded value (``csd-code``, ``codeSystemName``, ``originalText``)."""

    code: str
    meaning: str
    system: str = "DCM"


# Event IDs (CID 400) and event types (CID 401, 6022)
APPLICATION_ACTIVITY = Code("110100", "Application Activity")
BEGIN_TRANSFERRING = Code("110102", "Begin Transferring DICOM Instances")
INSTANCES_ACCESSED = Code("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = Code("110104", "DICOM Instances Transferred")
STUDY_DELETED = Code("110105", "DICOM Study Deleted")
EXPORT = Code("110106", "Export")
IMPORT = Code("110107", "Import")
PATIENT_RECORD = Code("110110", "Patient Record")
QUERY = Code("110112", "Query")
SECURITY_ALERT = Code("110113", "Security Alert")
USER_AUTHENTICATION = Code("110114", "User Authentication")
APPLICATION_START = Code("110120", "Application Start")
APPLICATION_STOP = Code("110121", "Application Stop")
LOGIN = Code("110122", "Login")
LOGOUT = Code("110123", "Logout")
NODE_AUTHENTICATION = Code("110126", "Node Authentication")
NETWORK_CONFIGURATION = Code("110128", "Network Configuration")
SECURITY_CONFIGURATION = Code("110129", "Security Configuration")
SOFTWARE_CONFIGURATION = Code("110131", "Software Configuration")
RESTRICTED_FUNCTION = Code("110132", "Use of Restricted Function")
USER_SECURITY_ATTRIBUTES = Code("110137", "User Security Attributes Changed")
# Active participant roles (CID 402)
APPLICATION = Code("110150", "Application")
DESTINATION = Code("110152", "Destination Role ID")
SOURCE = Code("110153", "Source Role ID")
DESTINATION_MEDIA = Code("110154", "Destination Media")
SOURCE_MEDIA = Code("110155", "Source Media")
# Media types (CID 405)
USB_DISK = Code("110030", "USB Disk Emulation")
CD = Code("110032", "CD")
DVD = Code("110033", "DVD")
URI_MEDIA = Code("110037", "URI")
# Participant object ID types (RFC 3881 and CID 404)
PATIENT_NUMBER = Code("2", "Patient Number", "RFC-3881")
URI = Code("12", "URI", "RFC-3881")
STUDY_INSTANCE_UID = Code("110180", "Study Instance UID")
SOP_CLASS_UID = Code("110181", "SOP Class UID")
NODE_ID = Code("110182", "Node ID")


@dataclass(frozen=True)
class Participant:
    """An ActiveParticipant: a DICOM node (AE title), an HTTP user, or pacsnode."""

    user_id: str
    address: str = ""
    requestor: bool = False
    role: Code | None = None
    alternative_id: str = ""
    media_type: Code | None = None
    """Set for a medium written or read (export, import): its MediaIdentifier."""


@dataclass
class Study:
    """What one event touched of one study, with its patient (read from the index)."""

    uid: str
    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    sop_classes: dict[str, int] = field(default_factory=dict)
    """Number of instances by SOP Class UID."""


@dataclass(frozen=True)
class Message:
    """An audit message and what the local log indexes of it."""

    time: datetime
    event: Code
    event_type: Code | None
    action: str
    outcome: int
    user: str
    address: str
    patients: tuple[str, ...]
    studies: tuple[str, ...]
    xml: str

    def as_json(self) -> dict[str, object]:
        return {
            "time": self.time.isoformat(),
            "event": self.event.meaning,
            "event_id": self.event.code,
            "event_type": self.event_type.meaning if self.event_type else "",
            "action": self.action,
            "outcome": self.outcome,
            "user": self.user,
            "address": self.address,
            "patients": list(self.patients),
            "studies": list(self.studies),
            "xml": self.xml,
        }


@dataclass(frozen=True)
class Source:
    """The AuditSourceIdentification: this pacsnode."""

    source_id: str
    site_id: str = ""


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent,
        tag,
        {"csd-code": code.code, "codeSystemName": code.system, "originalText": code.meaning},
    )


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _is_ip(address: str) -> bool:
    return address.replace(".", "").isdigit() or ":" in address


def _participant(root: ET.Element, who: Participant) -> None:
    attributes = {"UserID": who.user_id or "unknown", "UserIsRequestor": _bool(who.requestor)}
    if who.alternative_id:
        attributes["AlternativeUserID"] = who.alternative_id
    if who.address:
        attributes["NetworkAccessPointID"] = who.address
        attributes["NetworkAccessPointTypeCode"] = "2" if _is_ip(who.address) else "1"
    element = ET.SubElement(root, "ActiveParticipant", attributes)
    if who.role is not None:
        _coded(element, "RoleIDCode", who.role)
    if who.media_type is not None:
        _coded(ET.SubElement(element, "MediaIdentifier"), "MediaType", who.media_type)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _object(
    root: ET.Element,
    object_id: str,
    id_type: Code,
    type_code: str,
    role: str,
    *,
    name: str | None = None,
    query: bytes | None = None,
    details: Iterable[tuple[str, bytes | str]] = (),
    life_cycle: str = "",
) -> ET.Element:
    attributes = {
        "ParticipantObjectID": object_id,
        "ParticipantObjectTypeCode": type_code,
        "ParticipantObjectTypeCodeRole": role,
    }
    if life_cycle:
        attributes["ParticipantObjectDataLifeCycle"] = life_cycle
    element = ET.SubElement(root, "ParticipantObjectIdentification", attributes)
    _coded(element, "ParticipantObjectIDTypeCode", id_type)
    if query is not None:
        ET.SubElement(element, "ParticipantObjectQuery").text = _b64(query)
    else:
        ET.SubElement(element, "ParticipantObjectName").text = name or object_id
    for kind, value in details:
        ET.SubElement(element, "ParticipantObjectDetail", {"type": kind, "value": _b64(value)})
    return element


def _study(root: ET.Element, study: Study, details: Iterable[tuple[str, bytes | str]] = ()) -> None:
    element = _object(root, study.uid, STUDY_INSTANCE_UID, "2", "3", details=details)
    description = ET.SubElement(element, "ParticipantObjectDescription")
    if study.accession:
        ET.SubElement(description, "Accession", {"Number": study.accession})
    for sop_class, count in sorted(study.sop_classes.items()):
        ET.SubElement(description, "SOPClass", {"UID": sop_class, "NumberOfInstances": str(count)})


def _patients(root: ET.Element, studies: list[Study]) -> tuple[str, ...]:
    """One Patient object per distinct Patient ID, after the studies."""
    seen: dict[str, str] = {}
    for study in studies:
        seen.setdefault(study.patient_id, study.patient_name)
    for patient_id, name in seen.items():
        _object(root, patient_id or "unknown", PATIENT_NUMBER, "1", "1", name=name or None)
    return tuple(seen)


class Builder:
    """Builds the messages of one audit source (this pacsnode)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def _message(
        self,
        event: Code,
        action: Action,
        outcome: int,
        participants: list[Participant],
        event_type: Code | None = None,
        description: str = "",
    ) -> tuple[ET.Element, datetime]:
        now = datetime.now(UTC)
        root = ET.Element("AuditMessage")
        identification = ET.SubElement(
            root,
            "EventIdentification",
            {
                "EventActionCode": action,
                "EventDateTime": now.isoformat(timespec="milliseconds"),
                "EventOutcomeIndicator": str(outcome),
            },
        )
        _coded(identification, "EventID", event)
        if event_type is not None:
            _coded(identification, "EventTypeCode", event_type)
        if description:
            ET.SubElement(identification, "EventOutcomeDescription").text = description
        for participant in participants:
            _participant(root, participant)
        source = {"AuditSourceID": self.source.source_id}
        if self.source.site_id:
            source["AuditEnterpriseSiteID"] = self.source.site_id
        audit_source = ET.SubElement(root, "AuditSourceIdentification", source)
        ET.SubElement(audit_source, "AuditSourceTypeCode", {"csd-code": "4"})  # app server
        return root, now

    @staticmethod
    def _finish(
        root: ET.Element,
        when: datetime,
        event: Code,
        event_type: Code | None,
        outcome: int,
        actor: Participant,
        studies: list[Study] | None = None,
        details: Iterable[tuple[str, bytes | str]] = (),
    ) -> Message:
        patients: tuple[str, ...] = ()
        if studies:
            for study in studies:
                _study(root, study, details)
            patients = _patients(root, studies)
        identification = root.find("EventIdentification")
        assert identification is not None
        return Message(
            time=when,
            event=event,
            event_type=event_type,
            action=identification.get("EventActionCode", ""),
            outcome=outcome,
            user=actor.user_id,
            address=actor.address,
            patients=patients,
            studies=tuple(study.uid for study in studies or ()),
            xml=ET.tostring(root, encoding="unicode"),
        )

    def application_activity(self, application: Participant, started: bool) -> Message:
        kind = APPLICATION_START if started else APPLICATION_STOP
        who = Participant(
            application.user_id,
            application.address,
            False,
            APPLICATION,
            application.alternative_id,
        )
        root, when = self._message(APPLICATION_ACTIVITY, "E", SUCCESS, [who], kind)
        return self._finish(root, when, APPLICATION_ACTIVITY, kind, SUCCESS, who)

    def transferred(
        self,
        source: Participant,
        destination: Participant,
        studies: list[Study],
        action: Action,
        outcome: int,
        requestor: Participant | None = None,
        description: str = "",
        event: Code = INSTANCES_TRANSFERRED,
    ) -> Message:
        """DICOM Instances Transferred: C for what we received, R for what we sent; or,
        as ``event``, Begin Transferring DICOM Instances (action E) before sending."""
        participants = [
            _as(source, SOURCE),
            _as(destination, DESTINATION),
            *([requestor] if requestor is not None else []),
        ]
        root, when = self._message(event, action, outcome, participants, description=description)
        actor = next((p for p in participants if p.requestor), participants[0])
        return self._finish(root, when, event, None, outcome, actor, studies)

    def media_transfer(
        self,
        user: Participant,
        application: Participant,
        medium: Participant,
        studies: list[Study],
        exported: bool,
        outcome: int,
        description: str = "",
    ) -> Message:
        """Export (action R) of studies onto a medium, or Import (action C) from one:
        the user, this application as source or destination, and the medium."""
        event = EXPORT if exported else IMPORT
        action: Action = "R" if exported else "C"
        ours = SOURCE if exported else DESTINATION
        media_role = DESTINATION_MEDIA if exported else SOURCE_MEDIA
        participants = [user, _as(application, ours), _as(medium, media_role)]
        root, when = self._message(event, action, outcome, participants, description=description)
        return self._finish(root, when, event, None, outcome, user, studies)

    def patient_record(
        self,
        user: Participant,
        patient_id: str,
        patient_name: str,
        action: Action,
        changed: dict[str, str],
        life_cycle: str = "",
    ) -> Message:
        """Patient Record: created (C) or updated (U, with the new values), or deleted
        (D); ``life_cycle`` overrides the Data Life Cycle that action implies (RFC 3881:
        14 logical deletion, 15 permanent erasure)."""
        root, when = self._message(PATIENT_RECORD, action, SUCCESS, [user])
        _object(
            root,
            patient_id or "unknown",
            PATIENT_NUMBER,
            "1",
            "1",
            name=patient_name or None,
            details=sorted(changed.items()),
            life_cycle=life_cycle or ("1" if action == "C" else "3"),  # origination, amendment
        )
        message = self._finish(root, when, PATIENT_RECORD, None, SUCCESS, user)
        return replace(message, patients=(patient_id,))

    def accessed(
        self, user: Participant, studies: list[Study], action: Action, outcome: int = SUCCESS
    ) -> Message:
        """DICOM Instances Accessed: R for a retrieve over HTTP, D for a deletion."""
        root, when = self._message(INSTANCES_ACCESSED, action, outcome, [user])
        return self._finish(root, when, INSTANCES_ACCESSED, None, outcome, user, studies)

    def updated(self, user: Participant, studies: list[Study], changed: dict[str, str]) -> Message:
        """DICOM Instances Accessed, U: instances or their study changed in the archive
        (coerced on receipt, study attributes edited), with the new values."""
        root, when = self._message(INSTANCES_ACCESSED, "U", SUCCESS, [user])
        details = sorted(changed.items())
        return self._finish(root, when, INSTANCES_ACCESSED, None, SUCCESS, user, studies, details)

    def study_deleted(
        self, user: Participant, studies: list[Study], description: str = ""
    ) -> Message:
        """DICOM Study Deleted (A.5.3.4): studies, or part of them, removed by a user."""
        root, when = self._message(STUDY_DELETED, "D", SUCCESS, [user], description=description)
        return self._finish(root, when, STUDY_DELETED, None, SUCCESS, user, studies)

    def query(
        self,
        requestor: Participant,
        responder: Participant,
        sop_class: str,
        query: bytes,
        transfer_syntax: str = "",
    ) -> Message:
        """Query: the SOP class asked and the query itself (an identifier or URL)."""
        participants = [_as(requestor, SOURCE), _as(responder, DESTINATION)]
        root, when = self._message(QUERY, "E", SUCCESS, participants)
        details = [("TransferSyntax", transfer_syntax)] if transfer_syntax else []
        _object(root, sop_class, SOP_CLASS_UID, "2", "3", query=query, details=details)
        return self._finish(root, when, QUERY, None, SUCCESS, participants[0])

    def security_alert(
        self,
        reporter: Participant,
        performer: Participant,
        kind: Code,
        subject: str,
        description: str,
        outcome: int,
    ) -> Message:
        """Security Alert: the reporting process (us), who did it, and what was hit."""
        root, when = self._message(
            SECURITY_ALERT, "E", outcome, [reporter, performer], kind, description
        )
        id_type = URI if "/" in subject else NODE_ID
        _object(
            root,
            subject,
            id_type,
            "2",
            "13",
            details=[("Alert Description", description)],
        )
        return self._finish(root, when, SECURITY_ALERT, kind, outcome, performer)

    def user_authentication(
        self, user: Participant, node: Participant, logout: bool, outcome: int
    ) -> Message:
        kind = LOGOUT if logout else LOGIN
        root, when = self._message(USER_AUTHENTICATION, "E", outcome, [user, node], kind)
        return self._finish(root, when, USER_AUTHENTICATION, kind, outcome, user)


def _as(participant: Participant, role: Code) -> Participant:
    return replace(participant, role=role)
