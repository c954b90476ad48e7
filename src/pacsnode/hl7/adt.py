"""HL7 v2 ADT messages as changes to patient records (after IHE RAD TF-2 Table B-1).

| message | what it changes |
|---|---|
| ADT^A08, ADT^A31 | the patient of PID-3: PID-5 Patient's Name, PID-7 Birth Date, |
| | PID-8 Sex, and PID-3's further repetitions as Other Patient IDs |
| ADT^A40 | the patient of MRG-1 merged into the patient of PID-3 |

PID-3 and MRG-1 are CX fields, ``ID^^^authority``: the authority's namespace ID is the
Issuer of Patient ID. A field left empty changes nothing; ``""`` (HL7's null) empties
the attribute. ADT carries no study identity, so study attributes are changed through
the REST API and the CLI only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hl7

from pacsnode.hl7.orders import field_text, person

UPDATES = {"A08", "A31"}
MERGE = "A40"
_NULL = '""'
_SEXES = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": ""}


class AdtError(ValueError):
    """A message that is not an ADT message we can act on; the sender gets AR."""


@dataclass(frozen=True)
class PatientMessage:
    event: str
    """A08, A31 or A40."""
    patient_id: str
    issuer: str | None
    """The assigning authority of PID-3; None when the message names none."""
    changes: dict[str, str] = field(default_factory=dict)
    prior_id: str = ""
    """A40: the Patient ID merged away (MRG-1)."""
    prior_issuer: str | None = None


def _given(text: str) -> str | None:
    """A field's value: None when empty (no change), '' for HL7's null."""
    if not text:
        return None
    return "" if text == _NULL else text


def _changes(message: hl7.Message) -> dict[str, str]:
    found: dict[str, str | None] = {
        "PatientName": _given(person(message, "PID", 5)),
        "PatientBirthDate": _given(field_text(message, "PID", 7)[:8]),
        "PatientSex": _given(field_text(message, "PID", 8)),
    }
    sex = found["PatientSex"]
    if sex:
        found["PatientSex"] = _SEXES.get(sex.upper(), "O")
    others = [str(repetition[0]).strip() for repetition in list(message.segment("PID")[3])[1:]]
    if any(others):
        found["OtherPatientIDs"] = "\\".join(other for other in others if other)
    return {keyword: value for keyword, value in found.items() if value is not None}


def patient_message(message: hl7.Message, event: str) -> PatientMessage:
    """What an ADT message of ``event`` asks to change."""
    if event not in UPDATES and event != MERGE:
        raise AdtError(f"ADT^{event} is not handled (A08, A31 and A40 are)")
    patient_id = field_text(message, "PID", 3)
    if not patient_id:
        raise AdtError("the message names no patient (PID-3)")
    issuer = field_text(message, "PID", 3, 4) or None
    if event in UPDATES:
        return PatientMessage(event, patient_id, issuer, _changes(message))
    prior = field_text(message, "MRG", 1)
    if not prior:
        raise AdtError("a merge needs the prior patient identifier (MRG-1)")
    prior_issuer = field_text(message, "MRG", 1, 4) or None
    return PatientMessage(event, patient_id, issuer, prior_id=prior, prior_issuer=prior_issuer)
