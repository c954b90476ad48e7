"""De-identification: the DICOM PS3.15 Basic Application Level Confidentiality Profile
(Annex E) with its options, applied to objects on their way out.

The profile's action table (Table E.1-1, 2026c edition) comes from the
``dicom-anonymizer`` package (KitwareMedical), which extracts it from the standard;
the option columns it does not carry are below, by keyword, from the same edition.
This module applies them itself, at every sequence level: the package's own applier
acts on top-level attributes only and keeps no pseudonyms between calls.

:class:`Deidentifier` is pure: a data set in, a new data set out, given the options and
a key. Pseudonyms (UIDs, Patient ID and name, Accession Number, Study ID) are an
HMAC of the original value under the key, so they agree across a study, across calls
and across processes that share the key (``data_dir/deidentify.key``), and cannot be
turned back without it. Actions, with the choices the table leaves open made for IOD
conformance without knowing the IOD: X removes; Z and X/Z leave the attribute empty;
D, Z/D, X/D and X/Z/D put a dummy of the VR; U and X/Z/U* replace UIDs by pseudonyms;
K keeps; C (Clean Descriptors and the like) keeps the text without the patient's
names, IDs, accession number and birth date. Sequences are always entered, so that
their items get the same treatment; inside one the table replaces (D, as Content
Sequence), unlisted text is replaced by a dummy too. Private attributes go, except,
with Retain Safe Private, those of Table E.3.10-1 (``safe_private.tsv``, the whole
table of the 2024c edition, the newest whose text was at hand), with the creators of
their blocks; their sequences are entered too and their UIDs replaced.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from pacsnode.archive.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

TABLE_EDITION = "dicomfields_2026c"
KEY_FILE = "deidentify.key"
_CATEGORIES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


PATIENT_CHARACTERISTICS_KEPT = _words(
    """
    EthnicGroup PatientAge PatientSex PatientSexNeutered PatientSize PatientWeight
    PregnancyStatus SelectorASValue SmokingStatus
    """
)
PATIENT_CHARACTERISTICS_CLEANED = _words(
    """
    Allergies PatientState PreMedication SpecialNeeds
    """
)
DEVICE_IDENTITY_KEPT = _words(
    """
    BeamHoldTransitionDateTime CalibrationDate CalibrationDateTime CalibrationTime
    CassetteID DateOfInstallation DateOfLastCalibration DateOfLastDetectorCalibration
    DateOfManufacture DateTimeOfLastCalibration DetectorID DeviceDescription DeviceLabel
    DeviceSerialNumber DeviceUID GantryID GeneratorID LensMake LensModel LensSerialNumber
    LensSpecification ManufacturerDeviceClassUID ManufacturerDeviceIdentifier
    ModifyingDeviceID ModifyingSystem PerformedStationGeographicLocationCodeSequence
    PerformedStationName PerformedStationNameCodeSequence PlateID
    ScheduledProcedureStepLocation ScheduledStationGeographicLocationCodeSequence
    ScheduledStationName ScheduledStationNameCodeSequence ScheduledStudyLocation
    SourceManufacturer SourceSerialNumber StationName TimeOfLastCalibration
    TimeOfLastDetectorCalibration TransducerIdentificationSequence TreatmentMachineName
    UDISequence UniqueDeviceIdentifier XRayDetectorID XRayDetectorLabel XRaySourceID
    """
)
DEVICE_IDENTITY_CLEANED = _words(
    """
    DestinationAE NetworkID Originator PerformedStationAETitle ReceivingAE RequestingAE
    RetrieveAETitle ScheduledStationAETitle ScheduledStudyLocationAETitle SelectorAEValue
    StationAETitle
    """
)
INSTITUTION_IDENTITY_KEPT = _words(
    """
    ClinicalTrialCoordinatingCenterName ClinicalTrialProtocolEthicsCommitteeName
    ClinicalTrialSiteID ClinicalTrialSiteName InstitutionAddress InstitutionCodeSequence
    InstitutionName InstitutionalDepartmentName InstitutionalDepartmentTypeCodeSequence
    SourceOfPreviousValues
    """
)
DESCRIPTORS_CLEANED = _words(
    """
    AcquisitionComments AcquisitionDeviceProcessingDescription AcquisitionFieldOfViewLabel
    AcquisitionProtocolDescription AdditionalPatientHistory AdmittingDiagnosesCodeSequence
    AdmittingDiagnosesDescription Allergies AnnotationGroupDescription AnnotationGroupLabel
    BeamDescription BolusDescription ClinicalTrialSeriesDescription
    ClinicalTrialTimePointDescription CommentsOnRadiationDose
    CommentsOnThePerformedProcedureStep CompensatorDescription
    ConceptualVolumeCombinationDescription ConceptualVolumeDescription ContainerDescription
    ContrastBolusAgent ContributionDescription DecompositionDescription
    DerivationDescription DeviceSettingDescription DischargeDiagnosisDescription
    DisplacementReferenceLabel DoseReferenceDescription EntityDescription EntityLabel
    EntityLongLabel EntityName EquipmentFrameOfReferenceDescription
    FilterLookupTableDescription FixationDeviceDescription FractionGroupDescription
    FractionationNotes FrameComments IdentifyingComments ImageComments
    ImagingServiceRequestComments Impressions InterlockDescription
    InterlockOriginDescription InterpretationDiagnosisDescription InterpretationText
    LabelText LongDeviceDescription MakerNote MedicalAlerts
    MultienergyAcquisitionDescription Occupation PatientComments
    PatientSetupPhotoDescription PatientState PatientTreatmentPreparationMethodDescription
    PatientTreatmentPreparationProcedureParameterDescription
    PerformedProcedureStepDescription PositionAcquisitionTemplateDescription
    PositionAcquisitionTemplateName PrescriptionDescription PrescriptionNotes
    PrescriptionNotesSequence PriorTreatmentDoseDescription ProtocolName PyramidDescription
    PyramidLabel ROIDescription ROIGenerationDescription ROIName ROIObservationDescription
    ROIObservationLabel RTPhysicianIntentNarrative RTPlanDescription RTPlanLabel RTPlanName
    RTPrescriptionLabel RTToleranceSetLabel RTTreatmentApproachLabel
    RadiationDoseIdentificationLabel RadiationDoseInVivoMeasurementLabel
    RadiationGenerationModeDescription RadiationGenerationModeLabel
    ReasonForOmissionDescription ReasonForRequestedProcedureCodeSequence ReasonForStudy
    ReasonForSuperseding ReasonForTheAttributeModification ReasonForTheImagingServiceRequest
    ReasonForTheRequestedProcedure ReasonForVisit ReasonForVisitCodeSequence
    RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
    RequestedProcedureDescription RequestedSeriesDescription
    RespiratoryMotionCompensationTechniqueDescription ResultsComments
    ScheduledProcedureStepDescription SelectorLOValue SelectorLTValue SelectorSHValue
    SelectorSTValue SelectorUTValue SeriesDescription ServiceEpisodeDescription
    SetupTechniqueDescription ShieldingDeviceDescription SpecimenDetailedDescription
    SpecimenShortDescription StructureSetDescription StructureSetLabel StructureSetName
    StudyComments StudyDescription TreatmentPositionGroupLabel TreatmentSite TreatmentSites
    TreatmentTechniqueNotes TreatmentToleranceViolationDescription UserContentLabel
    UserContentLongLabel VisitComments WaveformFilterDescription
    """
)

# Retain UIDs keeps the table's UIDs but these, and the sequences of references
# (X/Z/U*) whole; Retain Longitudinal Temporal Information with Full Dates keeps its
# dates and times but the patient's birth and the GPS stamp, plus three that are no
# DA, DT or TM.
UIDS_NOT_KEPT = _words("DigitalSignatureUID UID TableTopPositionAlignmentUID")
DATES_NOT_KEPT = _words("PatientBirthDate PatientBirthTime GPSTimeStamp")
DATES_ALSO_KEPT = _words("CertifiedTimestamp TimezoneOffsetFromUTC FrameOriginTimestamp")
PSEUDONYMIZED = _words("PatientID PatientName AccessionNumber StudyID")
"""Z attributes given a pseudonym rather than emptied, so that what a study was
exported as stays recognisable across exports (PS3.15 allows a dummy for Z)."""

SAFE_PRIVATE_TABLE = Path(__file__).with_name("safe_private.tsv")
"""PS3.15 Table E.3.10-1 (Safe Private Attributes) whole, a data file of this package:
private creator, group, element offset, VR, VM, meaning, in the standard's order."""


@dataclass(frozen=True)
class SafePrivate:
    """A row of Table E.3.10-1: ``(group,xxEE)`` of the block ``creator`` reserves."""

    creator: str
    group: int
    element: int
    """The element's offset within its block (``EE``)."""
    vr: str
    """As the table gives it; empty where it gives none."""
    vm: str
    meaning: str


@cache
def safe_private() -> dict[tuple[str, int, int], SafePrivate]:
    """The safe private attributes by (private creator, group, element offset)."""
    text = SAFE_PRIVATE_TABLE.read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        creator, group, element, vr, vm, meaning = line.split("\t")
        row = SafePrivate(creator, int(group, 16), int(element, 16), vr, vm, meaning)
        rows[(row.creator, row.group, row.element)] = row
    return rows


OPTION_CODES = {
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
}
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")


class OptionError(ValueError):
    """An option word that names no supported option."""


@dataclass(frozen=True)
class Options:
    """The PS3.15 options chosen on top of the Basic Profile."""

    retain_uids: bool = False
    retain_dates: bool = False
    """Retain Longitudinal Temporal Information with Full Dates."""
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    clean_descriptors: bool = False
    retain_safe_private: bool = False

    @classmethod
    def from_words(cls, words: Iterable[str]) -> Options:
        """``retain-uids``, ``clean-descriptors``… (dashes or underscores)."""
        known = {f.name for f in fields(cls)}
        chosen = {}
        for word in words:
            name = word.strip().lower().replace("-", "_")
            if name not in known:
                names = ", ".join(sorted(n.replace("_", "-") for n in known))
                raise OptionError(f"unknown de-identification option {word!r}; use {names}")
            chosen[name] = True
        return cls(**chosen)

    def words(self) -> list[str]:
        return [f.name.replace("_", "-") for f in fields(self) if getattr(self, f.name)]

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """Each option's word and its name in PS3.15, for the forms that offer them."""
        return [(f.name.replace("_", "-"), OPTION_CODES[f.name][1]) for f in fields(cls)]


@cache
def basic_profile() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """Table E.1-1's Basic Profile actions: by tag, and the repeating groups' masks."""
    table = dicom_anonymization_database_selector(TABLE_EDITION)
    by_tag: dict[int, str] = {}
    masked = []
    for category, action in _CATEGORIES.items():
        for entry in table[category]:
            if len(entry) == 2:
                by_tag[(entry[0] << 16) | entry[1]] = action
            else:
                masked.append((entry[0], entry[1], entry[2], entry[3], action))
    return by_tag, tuple(masked)


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def profile_action(tag: int) -> str | None:
    """The Basic Profile's action for a (non-private) tag, None when it lists none."""
    by_tag, masked = basic_profile()
    if tag in by_tag:
        return by_tag[tag]
    group, element = tag >> 16, tag & 0xFFFF
    for g, e, gmask, emask, action in masked:
        if group & gmask == g & gmask and element & emask == e & emask:
            return action
    return None


def option_action(tag: int, keyword: str, options: Options) -> str | None:
    """What the chosen options make of an attribute of the table: K, C, or None."""
    kept = (
        (options.retain_uids and _uid_kept(tag, keyword))
        or (options.retain_dates and _date_kept(tag, keyword))
        or (options.retain_patient_characteristics and keyword in PATIENT_CHARACTERISTICS_KEPT)
        or (options.retain_device_identity and keyword in DEVICE_IDENTITY_KEPT)
        or (options.retain_institution_identity and keyword in INSTITUTION_IDENTITY_KEPT)
    )
    if kept:
        return "K"
    cleaned = (
        (options.clean_descriptors and keyword in DESCRIPTORS_CLEANED)
        or (options.retain_patient_characteristics and keyword in PATIENT_CHARACTERISTICS_CLEANED)
        or (options.retain_device_identity and keyword in DEVICE_IDENTITY_CLEANED)
    )
    return "C" if cleaned else None


def _uid_kept(tag: int, keyword: str) -> bool:
    if keyword in UIDS_NOT_KEPT:
        return False
    return _vr(tag) == "UI" or profile_action(tag) == "X/Z/U*"


def _date_kept(tag: int, keyword: str) -> bool:
    if keyword in DATES_NOT_KEPT:
        return False
    return _vr(tag) in ("DA", "DT", "TM") or keyword in DATES_ALSO_KEPT


def action(tag: int, options: Options) -> str | None:
    """The action for an attribute under the profile and ``options``; None: not listed."""
    basic = profile_action(tag)
    if basic is None:
        return None
    return option_action(tag, keyword_for_tag(tag) or "", options) or basic


def pseudonym_key(data_dir: Path) -> bytes:
    """The archive's pseudonym key, made (readable by its owner only) on first use."""
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


_DUMMIES = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "UR": "http://deidentified.invalid",
}


class Deidentifier:
    """Applies the profile with chosen options; pseudonyms under one key."""

    def __init__(self, options: Options, key: bytes) -> None:
        self.options = options
        self._key = key

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The pseudonym of a UID (``2.25.`` and a 128-bit number), or the UID itself
        with Retain UIDs."""
        if self.options.retain_uids:
            return original
        return "2.25." + str(int.from_bytes(self._digest("uid", original)[:16], "big"))

    def _code(self, kind: str, value: str, length: int) -> str:
        return self._digest(kind, value).hex()[:length].upper()

    def dataset(self, source: Dataset) -> Dataset:
        """A de-identified copy of ``source`` (its File Meta follows the new UIDs)."""
        result = Dataset()
        patient = f"{source.get('PatientID', '')}\0{source.get('IssuerOfPatientID', '')}"
        context = _Context(patient, _identifying(source))
        self._copy(source, result, context)
        self._mark(result)
        if hasattr(source, "file_meta"):
            meta = type(source.file_meta)()
            meta.update(source.file_meta)
            meta.MediaStorageSOPInstanceUID = UID(str(result.get("SOPInstanceUID", "")))
            meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
            meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
            result.file_meta = meta
        return result

    def file(self, source: Path, target: Path) -> str:
        """Write ``source`` de-identified to ``target``, in its own transfer syntax;
        returns the new SOP Instance UID."""
        dataset = self.dataset(dcmread(source))
        dataset.save_as(target, enforce_file_format=True)
        return str(dataset.SOPInstanceUID)

    def _copy(self, source: Dataset, target: Dataset, context: _Context) -> None:
        kept_private = self._safe_private(source)
        for element in source:
            tag = element.tag
            if tag.is_private:
                if tag in kept_private:
                    kept = self._private(element, kept_private[tag], context)
                    if kept is not None:
                        target.add(kept)
                continue
            if tag.group == 0x0002:
                continue
            done = self._element(element, context)
            if done is not None:
                target.add(done)

    def _element(self, element: DataElement, context: _Context) -> DataElement | None:
        verb = action(int(element.tag), self.options)
        if element.VR == "SQ":
            if verb == "X":
                return None
            if verb in ("Z", "X/Z"):
                return DataElement(element.tag, "SQ", Sequence())
            if verb in _DUMMY_ACTIONS:  # replaced content: its free text too
                context = replace(context, scrub=True)
            return DataElement(element.tag, "SQ", self._items(element.value, context))
        if verb is None and context.scrub and element.VR in _TEXT:
            return DataElement(element.tag, element.VR, _dummy(element.VR))
        if verb is None or verb == "K":
            return element
        if verb == "X":
            return None
        keyword = element.keyword
        if keyword in PSEUDONYMIZED and verb in ("Z", "X/Z", "Z/D", "D"):
            return DataElement(element.tag, element.VR, self._pseudonym(keyword, element, context))
        if verb in ("Z", "X/Z"):
            return DataElement(element.tag, element.VR, None)
        if verb in ("U", "X/Z/U*") or element.VR == "UI":
            return DataElement(element.tag, element.VR, self._uids(element.value))
        if verb == "C":
            return DataElement(element.tag, element.VR, _cleaned(element.value, context))
        return DataElement(element.tag, element.VR, _dummy(element.VR))

    def _items(self, items: Iterable[Dataset], context: _Context) -> Sequence:
        """A sequence's items, each de-identified as a data set of its own."""
        copies = Sequence()
        for item in items:
            copy = Dataset()
            self._copy(item, copy, context)
            copies.append(copy)
        return copies

    def _pseudonym(self, keyword: str, element: DataElement, context: _Context) -> str:
        if keyword == "PatientID":
            return "ANON" + self._code("patient", context.patient, 12)
        if keyword == "PatientName":
            return "ANONYMOUS^" + self._code("patient", context.patient, 8)
        kind = "accession" if keyword == "AccessionNumber" else "study-id"
        return self._code(kind, str(element.value or ""), 12) if element.value else ""

    def _uids(self, value: object) -> object:
        if isinstance(value, str) or value is None:
            return self.uid(value) if value else value
        return [self.uid(str(item)) for item in value]  # type: ignore[attr-defined]

    def _safe_private(self, source: Dataset) -> dict[BaseTag, SafePrivate | None]:
        """The private elements of this level kept (Retain Safe Private) with their row
        of Table E.3.10-1, and the creators of their blocks (None): each block keeps
        its number, so nothing is re-mapped."""
        if not self.options.retain_safe_private:
            return {}
        table = safe_private()
        kept: dict[BaseTag, SafePrivate | None] = {}
        for element in source:
            tag = element.tag
            if not tag.is_private or tag.element < 0x1000:
                continue
            creator_tag = Tag(tag.group, tag.element >> 8)
            creator = source.get(creator_tag)
            name = str(creator.value).strip() if creator is not None else ""
            row = table.get((name, tag.group, tag.element & 0xFF))
            if row is not None:
                kept |= {tag: row, creator_tag: None}
        return kept

    def _private(
        self, element: DataElement, row: SafePrivate | None, context: _Context
    ) -> DataElement | None:
        """A safe private element as it leaves: its items de-identified as any
        sequence's, its UIDs replaced as all others. A sequence read without its VR
        (UN, from Implicit VR) goes: its items cannot be looked into."""
        if row is None:  # the block's private creator
            return element
        if element.VR == "SQ":
            return DataElement(element.tag, "SQ", self._items(element.value, context))
        vr = row.vr if element.VR == "UN" else element.VR
        if vr == "SQ":
            return None
        if vr == "UI":
            value = element.value
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace").rstrip("\0 ").split("\\")
            return DataElement(element.tag, "UI", self._uids(value))
        return element

    def _mark(self, result: Dataset) -> None:
        """Say what was done (PS3.15 E.1.1, PS3.3 C.7.1.1)."""
        result.PatientIdentityRemoved = "YES"
        chosen = [OPTION_CODES[name.replace("-", "_")] for name in self.options.words()]
        result.DeidentificationMethod = [meaning for _code, meaning in [BASIC_PROFILE, *chosen]]
        codes = []
        for value, meaning in [BASIC_PROFILE, *chosen]:
            code = Dataset()
            code.CodeValue = value
            code.CodingSchemeDesignator = "DCM"
            code.CodeMeaning = meaning
            codes.append(code)
        result.DeidentificationMethodCodeSequence = codes
        dates = "UNMODIFIED" if self.options.retain_dates else "REMOVED"
        result.LongitudinalTemporalInformationModified = dates


@dataclass(frozen=True)
class _Context:
    patient: str
    """Patient ID and issuer of the object: the key of its patient pseudonyms."""
    identifying: re.Pattern[str] | None
    """The object's identifying values, which Clean removes from text."""
    scrub: bool = False
    """Inside a sequence the table replaces (D: Content Sequence without Clean
    Structured Content): text the table does not list is replaced too."""


_DUMMY_ACTIONS = ("D", "Z/D", "X/D", "X/Z/D")
_TEXT = ("LO", "LT", "SH", "ST", "UT", "UC", "PN")


def _identifying(source: Dataset) -> re.Pattern[str] | None:
    values: set[str] = set()
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate"):
        element = source.get(keyword)
        items = element if isinstance(element, list | tuple) else [element]
        values |= {str(item).strip() for item in items if item}
    name = str(source.get("PatientName", "") or "")
    values |= {part for part in re.split(r"[\^=\s,]+", name) if len(part) > 2}
    values = {value for value in values if value}
    if not values:
        return None
    alternatives = sorted((re.escape(value) for value in values), key=len, reverse=True)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _cleaned(value: object, context: _Context) -> object:
    if context.identifying is None or value is None:
        return value
    if isinstance(value, str):
        return " ".join(context.identifying.sub("", value).split())
    if isinstance(value, list | tuple):
        return [_cleaned(item, context) for item in value]
    return value


def _dummy(vr: str) -> object:
    if vr in _DUMMIES:
        return _DUMMIES[vr]
    if vr in ("FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"):
        return 0
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\0\0"
    return "DEIDENTIFIED"
