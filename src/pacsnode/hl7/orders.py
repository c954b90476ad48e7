"""HL7 v2 ORM^O01 orders as worklist items (after IHE RAD TF-2 Table B-1).

| HL7 field | worklist attribute |
|---|---|
| PID-3 (ID, assigning authority) | Patient ID, Issuer of Patient ID |
| PID-5, PID-7, PID-8 | Patient's Name, Birth Date, Sex |
| PV1-8, PV1-19 | Referring Physician's Name, Admission ID |
| ORC-1 | NW/XO schedule or replace, CA/DC/OC cancel |
| ORC-2 | the placer order the item is kept under (Placer Order Number) |
| ORC-3 | Filler Order Number |
| OBR-4 (code^text^scheme) | Requested Procedure Description and Code Sequence |
| OBR-16 | Requesting Physician |
| OBR-18, OBR-19, OBR-20 | Accession Number, Requested Procedure ID, SPS ID |
| OBR-21 | Scheduled Station AE Title (a local convention) |
| OBR-24 | Modality |
| OBR-36, else ORC-7.4 | SPS Start Date and Time |
| ZDS-1 | Study Instance UID |
"""

from __future__ import annotations

from dataclasses import dataclass

import hl7
from pydicom import Dataset

SCHEDULE = {"NW", "XO", "SC"}
CANCEL = {"CA", "DC", "OC"}


class OrderError(ValueError):
    """A message that is not an order we can act on; the sender gets AR."""


@dataclass(frozen=True)
class Order:
    control: str
    """NW, XO, CA…: what to do with the order."""
    placer_number: str
    item: Dataset


def field_text(message: hl7.Message, segment: str, field: int, component: int = 1) -> str:
    """``SEG-field.component`` as text, '' when the segment or field is absent."""
    try:
        return str(message.extract_field(segment, 1, field, 1, component)).strip()
    except (KeyError, IndexError):
        return ""


def person(message: hl7.Message, segment: str, field: int, offset: int = 0) -> str:
    """An XPN (family^given^middle^suffix^prefix) or XCN (id^family^…) as a DICOM
    name (family^given^middle^prefix^suffix)."""
    parts = [field_text(message, segment, field, offset + n) for n in range(1, 6)]
    family, given, middle, suffix, prefix = parts
    return "^".join([family, given, middle, prefix, suffix]).rstrip("^")


def _set(dataset: Dataset, keyword: str, value: str) -> None:
    if value:
        setattr(dataset, keyword, value)


def parse(text: str) -> hl7.Message:
    """An HL7 v2 message (segments may end in CR or LF); OrderError if it is none."""
    try:
        return hl7.parse(text.replace("\n", "\r"))
    except Exception as exc:
        raise OrderError(f"not an HL7 v2 message: {exc}") from exc


def message_type(message: hl7.Message) -> str:
    """MSH-9 as ``ORM^O01``, ``ADT^A08``…"""
    return f"{field_text(message, 'MSH', 9, 1)}^{field_text(message, 'MSH', 9, 2)}"


def order(message: hl7.Message) -> Order:
    """The worklist item an ORM^O01 message asks for."""
    kind = message_type(message)
    if kind != "ORM^O01":
        raise OrderError(f"{kind} is not an order (ORM^O01)")
    control = field_text(message, "ORC", 1)
    placer = field_text(message, "ORC", 2) or field_text(message, "OBR", 2)
    if control not in SCHEDULE | CANCEL:
        raise OrderError(f"order control {control!r} is not handled")
    if not placer:
        raise OrderError("the order has no placer order number (ORC-2)")
    return Order(control, placer, _item(message, placer))


def _item(message: hl7.Message, placer: str) -> Dataset:
    item = Dataset()
    _set(item, "PatientID", field_text(message, "PID", 3))
    _set(item, "IssuerOfPatientID", field_text(message, "PID", 3, 4))
    _set(item, "PatientName", person(message, "PID", 5))
    _set(item, "PatientBirthDate", field_text(message, "PID", 7)[:8])
    _set(item, "PatientSex", field_text(message, "PID", 8))
    _set(item, "ReferringPhysicianName", person(message, "PV1", 8, offset=1))
    _set(item, "AdmissionID", field_text(message, "PV1", 19))
    _set(item, "PlacerOrderNumberImagingServiceRequest", placer)
    _set(item, "FillerOrderNumberImagingServiceRequest", field_text(message, "ORC", 3))
    _set(item, "RequestingPhysician", person(message, "OBR", 16, offset=1))
    _set(item, "AccessionNumber", field_text(message, "OBR", 18))
    _set(item, "RequestedProcedureID", field_text(message, "OBR", 19))
    _set(item, "StudyInstanceUID", field_text(message, "ZDS", 1))
    code, meaning, scheme = (field_text(message, "OBR", 4, n) for n in (1, 2, 3))
    _set(item, "RequestedProcedureDescription", meaning or code)
    if code:
        procedure = Dataset()
        procedure.CodeValue = code
        procedure.CodingSchemeDesignator = scheme or "L"
        procedure.CodeMeaning = meaning or code
        item.RequestedProcedureCodeSequence = [procedure]
    step = Dataset()
    _set(step, "ScheduledProcedureStepID", field_text(message, "OBR", 20))
    _set(step, "ScheduledStationAETitle", field_text(message, "OBR", 21))
    _set(step, "Modality", field_text(message, "OBR", 24))
    _set(step, "ScheduledProcedureStepDescription", meaning)
    start = field_text(message, "OBR", 36) or field_text(message, "ORC", 7, 4)
    _set(step, "ScheduledProcedureStepStartDate", start[:8])
    _set(step, "ScheduledProcedureStepStartTime", start[8:14])
    item.ScheduledProcedureStepSequence = [step]
    return item


def acknowledgement(text: str, code: str, error: str = "") -> str:
    """The ACK for a message (AA accepted, AR rejected, AE error), as HL7 text."""
    try:
        message = hl7.parse(text.replace("\n", "\r"))
        ack = message.create_ack(ack_code=code)
    except Exception:  # not even a header to answer to
        return f"MSH|^~\\&|PACSNODE||||||ACK|0|P|2.5\rMSA|{code}|0|{error[:80]}"
    if error:
        ack.segment("MSA").assign_field(error[:80], 3)
    return str(ack)
