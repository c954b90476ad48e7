"""De-identification on the way out (PS3.15 Basic Application Level Confidentiality
Profile): every attribute of Table E.1-1 checked against its action at the top level
and inside a sequence, the options on attributes the standard names, pseudonyms that
agree across a study and across calls, private attributes against Table E.3.10-1 as
the standard gives it, and the three doors (REST export, ``pacsnode export-media
--deidentify``, a routing rule) writing objects that dcmdump reads without a warning."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ct_dataset, start_server
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from peers import dcmtk, pacsnode_cli, send_datasets
from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from test_routing import StoreScp, wait_for

from pacsnode.archive.deidentify import (
    SAFE_PRIVATE_TABLE,
    Deidentifier,
    OptionError,
    Options,
    safe_private,
)

KEY = b"k" * 32
CATEGORIES = {
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
PSEUDONYMIZED = {"PatientID", "PatientName", "AccessionNumber", "StudyID"}
CONTAINER = "ReferencedSeriesSequence"  # not in the table: its items get the table too


def table() -> dict[int, str]:
    """Table E.1-1 (2026c) as the dicom-anonymizer package ships it: tag to action."""
    lists = dicom_anonymization_database_selector("dicomfields_2026c")
    return {
        (entry[0] << 16) | entry[1]: action
        for category, action in CATEGORIES.items()
        for entry in lists[category]
        if len(entry) == 2
    }


def _vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return None


VALUES: dict[str, Any] = {
    "AE": "STATION1",
    "AS": "042Y",
    "CS": "VALUE",
    "DA": "20200102",
    "DS": "1.5",
    "DT": "20200102030405",
    "FL": 1.5,
    "FD": 1.5,
    "IS": "7",
    "LO": "long string",
    "LT": "long text",
    "PN": "DOE^JOHN",
    "SH": "SHORT",
    "SL": 1,
    "SS": 1,
    "ST": "short text",
    "SV": 1,
    "TM": "101010",
    "UC": "unlimited",
    "UL": 1,
    "UR": "http://example.org/x",
    "US": 1,
    "UT": "unlimited text",
    "UV": 1,
}


def listed_attributes() -> dict[int, str]:
    """The table's attributes a data set can carry: data set groups, a known VR."""
    return {
        tag: action
        for tag, action in table().items()
        if 0x0008 <= tag >> 16 < 0xFFFA and _vr(tag) is not None
    }


def element(tag: int) -> DataElement:
    vr = _vr(tag)
    assert vr is not None
    if vr == "SQ":
        item = Dataset()
        item.CodeValue = "C1"
        item.CodingSchemeDesignator = "99TEST"
        return DataElement(tag, vr, Sequence([item]))
    if vr == "UI":
        return DataElement(tag, vr, generate_uid())
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return DataElement(tag, vr, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    return DataElement(tag, vr, VALUES[vr])


def full_dataset() -> Dataset:
    """A data set holding every listed attribute, and all of them again in an item."""
    assert tag_of(CONTAINER) not in table()
    top, item = Dataset(), Dataset()
    for tag in listed_attributes():
        top.add(element(tag))
        item.add(element(tag))
    top.PatientID, top.PatientName = "PID123", "DOE^JOHN"
    top.add(DataElement(tag_of(CONTAINER), "SQ", Sequence([item])))
    return top


def tag_of(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    assert tag is not None
    return int(tag)


def check(action: str, before: DataElement, after: Dataset, deid: Deidentifier) -> None:
    tag, name = before.tag, keyword_for_tag(before.tag) or hex(before.tag)
    got = after.get(tag)
    if action == "X":
        assert got is None, f"{name} ({action}) kept"
        return
    assert got is not None, f"{name} ({action}) removed"
    if before.VR == "SQ":
        if action in ("Z", "X/Z"):
            assert len(got.value) == 0, f"{name} ({action}) not emptied"
        return
    if name in PSEUDONYMIZED:
        assert got.value and got.value != before.value, f"{name} not given a pseudonym"
    elif action in ("Z", "X/Z"):
        assert got.is_empty, f"{name} ({action}) not emptied: {got.value!r}"
    elif action == "U" or before.VR == "UI":
        assert got.value == deid.uid(before.value) != before.value, f"{name} ({action})"
    else:
        assert not got.is_empty and got.value != before.value, f"{name} ({action}) unchanged"


def test_every_attribute_of_the_table_gets_its_action_at_every_level() -> None:
    source = full_dataset()
    deid = Deidentifier(Options(), KEY)

    result = deid.dataset(source)

    [item_before] = source[CONTAINER].value
    [item_after] = result[CONTAINER].value
    checked = 0
    for tag, action in listed_attributes().items():
        check(action, source[tag], result, deid)
        check(action, item_before[tag], item_after, deid)
        checked += 2
    assert checked > 1000  # the whole table, twice
    assert result.PatientIdentityRemoved == "YES"
    assert result.LongitudinalTemporalInformationModified == "REMOVED"
    assert [code.CodeValue for code in result.DeidentificationMethodCodeSequence] == ["113100"]


# PS3.15 Table E.1-1, option columns (2026c): what each option does to some attributes.
OPTION_CASES = [
    ("retain-uids", "SOPInstanceUID", "K"),
    ("retain-uids", "StudyInstanceUID", "K"),
    ("retain-dates", "StudyDate", "K"),
    ("retain-dates", "AcquisitionDateTime", "K"),
    ("retain-dates", "PatientBirthDate", "Z"),  # not longitudinal: still removed
    ("retain-patient-characteristics", "PatientSex", "K"),
    ("retain-patient-characteristics", "PatientWeight", "K"),
    ("retain-patient-characteristics", "Allergies", "C"),
    ("retain-device-identity", "DeviceSerialNumber", "K"),
    ("retain-device-identity", "StationName", "K"),
    ("retain-institution-identity", "InstitutionName", "K"),
    ("retain-institution-identity", "InstitutionAddress", "K"),
    ("clean-descriptors", "StudyDescription", "C"),
    ("clean-descriptors", "SeriesDescription", "C"),
    ("clean-descriptors", "ImageComments", "C"),
]


@pytest.mark.parametrize(("option", "keyword", "expected"), OPTION_CASES)
def test_options_change_what_the_standard_says(option: str, keyword: str, expected: str) -> None:
    source = Dataset()
    source.PatientName, source.PatientID = "DOE^JOHN", "PID123"
    value = element(tag_of(keyword)).value
    if _vr(tag_of(keyword)) in ("LO", "LT", "ST", "UT"):
        value = "Knee of Doe PID123 left"
    setattr(source, keyword, value)
    without = Deidentifier(Options(), KEY).dataset(source)
    deid = Deidentifier(Options.from_words([option]), KEY)

    result = deid.dataset(source)

    if expected == "K":
        assert result[keyword].value == source[keyword].value
        assert without.get(keyword) is None or without[keyword].value != source[keyword].value
    elif expected == "C":
        assert result[keyword].value == "Knee of left"  # the patient's name and ID gone
    else:
        assert result[keyword].is_empty


def test_pseudonyms_agree_across_a_study_and_across_calls() -> None:
    study, series = generate_uid(), generate_uid()
    first, second = (
        ct_dataset(study=study, series=series, patient_id="PX", InstanceNumber=n) for n in (1, 2)
    )
    other_patient = ct_dataset(study=generate_uid(), patient_id="PY")

    one, two = Deidentifier(Options(), KEY), Deidentifier(Options(), KEY)
    a, b, c = one.dataset(first), two.dataset(second), one.dataset(other_patient)

    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName"):
        assert a[keyword].value == b[keyword].value != first[keyword].value, keyword
    assert a.AccessionNumber == b.AccessionNumber != "ACC001"
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert c.PatientID != a.PatientID
    assert Deidentifier(Options(), b"x" * 32).dataset(first).StudyInstanceUID != a.StudyInstanceUID
    kept = Deidentifier(Options(retain_uids=True), KEY).dataset(first)
    assert kept.SOPInstanceUID == first.SOPInstanceUID


def test_report_text_in_a_replaced_content_sequence_is_replaced() -> None:
    source = ct_dataset()
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    text.TextValue = "Mr Doe, born 1970, seen by Dr Smith"
    source.ContentSequence = [text]

    result = Deidentifier(Options(), KEY).dataset(source)

    [item] = result.ContentSequence
    assert item.TextValue == "DEIDENTIFIED" and item.ValueType == "TEXT"


# PS3.15 2024c, Table E.3.10-1, rows as the standard writes them: (gggg,xxEE), private
# creator, VR, VM, meaning; one or two of each vendor.
STANDARD_ROWS = [
    ("(7053,xx00)", "Philips PET Private Group", "DS", "1",
     "SUV Factor - Multiplying Stored Pixel Values by Rescale Slope then this factor "
     "results in SUVbw in g/l"),
    ("(01F1,xx26)", "ELSCINT1", "DS", "1", "Pitch"),
    ("(0019,xx9E)", "GEMS_ACQU_01", "LO", "1", "Internal Pulse Sequence Name"),
    ("(0043,xx39)", "GEMS_PARM_01", "IS", "4", "1st value is B Value"),
    ("(0903,xx12)", "GEIIS PACS", "US", "1", "Confidential Flag"),
    ("(0019,xx0E)", "SIEMENS MR HEADER", "FD", "3", "Diffusion Gradient Direction"),
    ("(0119,xx11)", "SIEMENS Ultrasound SC2000", "", "1", "Stage Timer Time"),
    ("(2005,xx0E)", "Philips MR Imaging DD 001", "FL", "1", "Scale Slope"),
    ("(2001,xx00)", "Philips Imaging DD 129", "SQ", "1", "Presentation State Sequence"),
    ("(7E01,xx12)", "HOLOGIC, Inc.", "OB", "1", "Codec Content"),
    ("(0099,xx02)", "NQHeader", "UI", "1", "Analyzed Series UID"),
]  # fmt: skip


def test_safe_private_table_is_the_standards_table_e_3_10_1() -> None:
    heading = SAFE_PRIVATE_TABLE.read_text().splitlines()[0]
    assert heading.startswith("# PS3.15 Table E.3.10-1 Safe Private Attributes, DICOM 2024c")

    table = safe_private()

    assert len(table) == 479  # every row of the 2024c edition
    assert len({row.creator for row in table.values()}) == 20
    for element, creator, vr, vm, meaning in STANDARD_ROWS:
        group, offset = int(element[1:5], 16), int(element[8:10], 16)
        row = table[(creator, group, offset)]
        assert (row.vr, row.vm, row.meaning) == (vr, vm, meaning), element


def private_elements(ds: Dataset) -> set[tuple[int, str]]:
    """Every private element (tag, value as text) at any level of ``ds``."""
    found = set()
    for element in ds.iterall():
        if element.tag.is_private and element.VR != "SQ":
            found.add((int(element.tag), str(element.value)))
    return found


UNSAFE = [
    ("SIEMENS MR HEADER", 0x0019, 0x0B),
    ("GEMS_ACQU_01", 0x0019, 0x25),
    ("VENDOR X", 0x0019, 0x0C),
    ("Philips Imaging DD 002", 0x2001, 0x7F),
]
"""The private attributes of :func:`with_private_attributes` that the table does not list."""


def with_private_attributes() -> tuple[Dataset, set[tuple[int, str]]]:
    """An object with safe private attributes of four vendors, unsafe ones beside them
    (in their blocks, in other blocks of their groups, in items), and what Retain Safe
    Private keeps of them (UIDs aside)."""
    ds = ct_dataset(patient_name="DOE^JOHN", patient_id="PRIV1")
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)  # (0019,10xx)
    siemens.add_new(0x0C, "IS", "1000")  # B Value: safe
    siemens.add_new(0x0E, "FD", [0.0, 0.6, 0.8])  # Diffusion Gradient Direction: safe
    siemens.add_new(0x0B, "LO", "DOE^JOHN")  # not in the table
    ge = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)  # (0019,11xx)
    ge.add_new(0x23, "DS", "39.37")  # Table Speed: safe
    ge.add_new(0x25, "LO", "PRIV1")  # not in the table
    other = ds.private_block(0x0019, "VENDOR X", create=True)  # (0019,12xx)
    other.add_new(0x0C, "LO", "secret")  # a safe offset, of a creator that is not
    ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(
        0x00, "DS", "0.000543"
    )  # SUV Factor: safe
    state = Dataset()
    state.PatientName = "DOE^JOHN"  # a standard attribute inside: de-identified too
    state.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(
        0x03, "FL", 700.0
    )  # Diffusion B-Factor: safe
    state.private_block(0x2001, "Philips Imaging DD 002", create=True).add_new(
        0x7F, "LO", "DOE"
    )  # not in the table
    ds.private_block(0x2001, "Philips Imaging DD 129", create=True).add_new(
        0x00, "SQ", Sequence([state])
    )  # Presentation State Sequence: safe
    for unsafe in UNSAFE:
        assert unsafe not in safe_private()
    safe = {
        (0x00190010, "SIEMENS MR HEADER"),
        (0x0019100C, "1000"),
        (0x0019100E, "[0.0, 0.6, 0.8]"),
        (0x00190011, "GEMS_ACQU_01"),
        (0x00191123, "39.37"),
        (0x70530010, "Philips PET Private Group"),
        (0x70531000, "0.000543"),
        (0x20010010, "Philips Imaging DD 001"),  # in the item
        (0x20011003, "700.0"),
        (0x20010010, "Philips Imaging DD 129"),  # its sequence at (2001,1000)
    }
    return ds, safe


def test_retain_safe_private_keeps_exactly_the_safe_ones(tmp_path: Path) -> None:
    source, safe = with_private_attributes()
    series_uid = str(source.SeriesInstanceUID)
    source.private_block(0x0099, "NQHeader", create=True).add_new(0x02, "UI", series_uid)
    path = tmp_path / "retained.dcm"
    deid = Deidentifier(Options(retain_safe_private=True), KEY)

    deid.dataset(source).save_as(path, enforce_file_format=True)

    dcmdump_clean(path)
    result = dcmread(path)
    pseudonym = deid.uid(series_uid)  # Analyzed Series UID (UI): replaced as the series'
    assert private_elements(result) == safe | {(0x00990010, "NQHeader"), (0x00991002, pseudonym)}
    assert result.SeriesInstanceUID == pseudonym
    assert result.private_block(0x0019, "GEMS_ACQU_01")[0x23].value == "39.37"
    [state] = result.private_block(0x2001, "Philips Imaging DD 129")[0x00].value
    assert str(state.PatientName).startswith("ANONYMOUS^")
    assert "113111" in {code.CodeValue for code in result.DeidentificationMethodCodeSequence}


def test_without_retain_safe_private_every_private_attribute_goes(tmp_path: Path) -> None:
    source, _safe = with_private_attributes()
    path = tmp_path / "strict.dcm"

    Deidentifier(Options(), KEY).dataset(source).save_as(path, enforce_file_format=True)

    dcmdump_clean(path)
    result = dcmread(path)
    assert not [element for element in result.iterall() if element.tag.is_private]
    assert private_elements(source)  # there were some, at two levels


def test_safe_private_read_without_its_vr() -> None:
    """Implicit VR: a safe sequence read as UN cannot be looked into and goes; a safe
    UID read as UN is replaced all the same."""
    source = ct_dataset()
    uid = generate_uid()
    block = source.private_block(0x2001, "Philips Imaging DD 001", create=True)
    block.add_new(0x66, "UN", b"\xfe\xff\x00\xe0\x00\x00\x00\x00")  # SQ in the table
    source.private_block(0x0099, "NQHeader", create=True).add_new(
        0x01, "UN", uid.encode() + b"\0" * (len(uid) % 2)
    )  # Version, UI in the table
    deid = Deidentifier(Options(retain_safe_private=True), KEY)

    result = deid.dataset(source)

    assert 0x20011066 not in result
    assert result[0x00991001].VR == "UI" and result[0x00991001].value == deid.uid(uid)


def test_an_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(OptionError, match="unknown de-identification option 'keep-all'"):
        Options.from_words(["keep-all"])


# --- the doors -------------------------------------------------------------------


class Doors:
    def __init__(self, server: RunningServer, scp: StoreScp) -> None:
        self.server = server
        self.scp = scp


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    base = tmp_path_factory.mktemp("deidentify")
    scp = StoreScp(base / "received").start()
    remotes = [{"ae_title": "RESEARCH", "host": "127.0.0.1", "port": scp.port}]
    server = start_server(base, remotes)
    yield Doors(server, scp)
    server.kill()
    scp.stop()


def study_with_sequences(patient_id: str) -> list[Dataset]:
    study, series = generate_uid(), generate_uid()
    made = []
    for number in (1, 2):
        ds = ct_dataset(study=study, series=series, patient_id=patient_id, InstanceNumber=number)
        ds.PatientBirthDate = "19700101"
        ds.InstitutionName = "General Hospital"
        ds.StudyDescription = f"CT of {patient_id}"
        ds.ReferringPhysicianName = "SMITH^ANNA"
        request = Dataset()
        request.RequestedProcedureID = "RP1"
        request.ScheduledProcedureStepID = "SPS1"
        request.AccessionNumber = "ACC001"
        ds.RequestAttributesSequence = [request]
        made.append(ds)
    for ds, other in zip(made, reversed(made), strict=True):
        reference = Dataset()
        reference.ReferencedSOPClassUID = other.SOPClassUID
        reference.ReferencedSOPInstanceUID = other.SOPInstanceUID
        ds.ReferencedImageSequence = [reference]
    return made


def dcmdump_clean(path: Path) -> None:
    dumped = dcmtk("dcmdump", "-q", str(path))
    assert dumped.returncode == 0 and not dumped.stderr.strip(), dumped.stderr


def assert_deidentified(path: Path, original: Dataset, uids_kept: bool = False) -> Dataset:
    """A de-identified copy of one of ``original``'s study, valid for dcmdump."""
    dcmdump_clean(path)
    ds = dcmread(path)
    assert ds.PatientIdentityRemoved == "YES"
    assert str(ds.PatientName).startswith("ANONYMOUS^") and ds.PatientID.startswith("ANON")
    assert ds.get("InstitutionName") != "General Hospital" and not ds.get("PatientBirthDate")
    assert not ds.get("ReferringPhysicianName")
    for request in ds.get("RequestAttributesSequence") or []:  # X, or C: cleaned inside
        assert request.get("RequestedProcedureID") != "RP1"
        assert request.get("AccessionNumber") != "ACC001"
    [reference] = ds.ReferencedImageSequence  # X/Z/U*: kept, its UIDs replaced
    originals = {
        str(original.SOPInstanceUID),
        str(original.ReferencedImageSequence[0].ReferencedSOPInstanceUID),
    }
    assert (reference.ReferencedSOPInstanceUID in originals) is uids_kept
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PixelData == original.PixelData
    return ds


def test_rest_export_as_a_zip(doors: Doors) -> None:
    made = study_with_sequences("EXP1")
    assert send_datasets(doors.server.port, made) == [0, 0]
    study = str(made[0].StudyInstanceUID)
    url = f"{doors.server.url}/api/studies/{study}/export"

    answer = httpx.post(url, json={"options": ["clean-descriptors"]}, timeout=60)

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    folder = doors.server.data_dir.parent / "zip"
    zipfile.ZipFile(io.BytesIO(answer.content)).extractall(folder)
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    assert len(files) == 2
    exported = [assert_deidentified(path, made[0]) for path in files]
    assert {ds.StudyInstanceUID for ds in exported} != {study}
    assert len({ds.StudyInstanceUID for ds in exported}) == 1
    assert {ds.StudyDescription for ds in exported} == {"CT of"}  # cleaned of "EXP1"
    dcmdump_clean(folder / "DICOMDIR")
    bad = httpx.post(url, json={"options": ["keep-all"]}, timeout=30)
    assert bad.status_code == 400 and "keep-all" in bad.json()["error"]


def test_rest_export_to_a_remote_and_a_routing_rule(doors: Doors) -> None:
    routes = f"{doors.server.url}/api/routes"
    rule = {
        "name": "research",
        "destinations": ["RESEARCH"],
        "calling_ae": ["RESEARCHMOD"],
        "deidentify": True,
        "deidentify_options": ["retain-uids"],
    }
    assert httpx.post(routes, json=rule, timeout=30).status_code == 201
    routed = study_with_sequences("RTE1")
    assert send_datasets(doors.server.port, routed, calling_ae="RESEARCHMOD") == [0, 0]

    for ds in routed:  # retain-uids: they arrive under their own UIDs
        path = wait_for(lambda ds=ds: doors.scp.received(ds.SOPInstanceUID), "routed copy")
        assert assert_deidentified(path, ds, True).StudyInstanceUID == ds.StudyInstanceUID

    sent = study_with_sequences("SND1")
    assert send_datasets(doors.server.port, sent) == [0, 0]
    url = f"{doors.server.url}/api/studies/{sent[0].StudyInstanceUID}/export"
    queued = httpx.post(url, json={"to": "remote", "remote": "RESEARCH"}, timeout=30)
    assert queued.status_code == 202
    before = set(doors.scp.directory.iterdir())

    def arrived() -> list[Path]:
        new = [p for p in doors.scp.directory.iterdir() if p not in before]
        return new if len(new) == 2 else []

    for path in wait_for(arrived, "the sent study"):
        assert assert_deidentified(path, sent[0]).StudyInstanceUID != sent[0].StudyInstanceUID


def test_export_media_deidentified(doors: Doors) -> None:
    made = study_with_sequences("CLI1")
    assert send_datasets(doors.server.port, made) == [0, 0]
    out = doors.server.data_dir.parent / "cd"
    config = str(doors.server.config_path)
    study = str(made[0].StudyInstanceUID)

    done = pacsnode_cli(
        "export-media", str(out), "--study", study, "--deidentify", "--config", config
    )

    assert done.returncode == 0, done.stderr
    assert "exported 2 instances de-identified (basic profile)" in done.stdout
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    assert len(files) == 2
    for path in files:
        assert_deidentified(path, made[0])
    refused = pacsnode_cli("export-media", str(out), "--study", study, "--deidentify-option", "x")
    assert refused.returncode == 2 and "goes with --deidentify" in refused.stderr
