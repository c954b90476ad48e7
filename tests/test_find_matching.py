"""PS3.4 C.2.2.2 matching over a real server: relational keys, combined date-time,
sequence matching, unsupported keys, ACR-NEMA times and configurable case folding."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from conftest import PYDICOM_FILES, RunningServer, ServerFactory, ct_dataset
from pdu import Relay
from peers import associate, send_datasets, send_files
from pydicom import Dataset, dcmread
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

PATIENT_ROOT = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@pytest.fixture
def server(server_factory: ServerFactory, database_url: str) -> RunningServer:
    """The archive on SQLite and on PostgreSQL: the matching SQL must agree on both."""
    return server_factory(database_url=database_url)


def find(
    port: int, model: str, identifier: Dataset, extended: bytes | None = None
) -> tuple[list[tuple[int, Dataset]], int]:
    """One C-FIND, optionally with extended negotiation; (pending responses, final status)."""
    ae = AE(ae_title="MATCHER")
    ae.add_requested_context(model)
    negotiation = []
    if extended is not None:
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = model
        item.service_class_application_information = extended
        negotiation.append(item)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSNODE", ext_neg=negotiation)
    assert assoc.is_established
    pending, final = [], -1
    for status, found in assoc.send_c_find(identifier, model):
        if status.Status in (0xFF00, 0xFF01):
            pending.append((int(status.Status), found))
        else:
            final = int(status.Status)
    assoc.release()
    return pending, final


def identifier(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def values(pending: Sequence[tuple[int, Dataset]], keyword: str) -> set[str]:
    return {str(found.get(keyword, "")) for _status, found in pending}


def item(**keys: str) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture
def studies(server: RunningServer) -> dict[str, str]:
    """Five studies of one patient at different dates and times, one with an MR series,
    one with a Basic Text SR, and series carrying Request Attributes items."""
    times = {
        "0705-0900": ("20060705", "090000"),
        "0705-1100": ("20060705", "110000"),
        "0706-0800": ("20060706", "080000"),
        "0707-1700": ("20060707", "170000"),
        "0707-1900": ("20060707", "190000"),
    }
    uids = {name: generate_uid() for name in times}
    common = {"patient_id": "DT1", "patient_name": "TIME^TRAVELLER"}
    datasets = [
        ct_dataset(study=uids[name], StudyDate=date, StudyTime=time, **common)
        for name, (date, time) in times.items()
    ]
    split_items = [
        item(RequestedProcedureID="RP1", ScheduledProcedureStepID="SPS1"),
        item(RequestedProcedureID="RP2", ScheduledProcedureStepID="SPS2"),
    ]
    one_item = [item(RequestedProcedureID="RP1", ScheduledProcedureStepID="SPS2")]
    datasets[0].RequestAttributesSequence = DicomSequence(split_items)
    datasets[1].RequestAttributesSequence = DicomSequence(one_item)
    datasets.append(ct_dataset(study=uids["0706-0800"], modality="MR", **common))
    report = ct_dataset(study=uids["0707-1700"], modality="SR", sop_class=BASIC_TEXT_SR, **common)
    concept = item(CodeValue="18748-4", CodingSchemeDesignator="LN", CodeMeaning="Report")
    report.ConceptNameCodeSequence = DicomSequence([concept])
    report.VerificationFlag = "VERIFIED"
    for sop_class in sorted({str(ds.SOPClassUID) for ds in [*datasets, report]}):
        batch = [ds for ds in [*datasets, report] if str(ds.SOPClassUID) == sop_class]
        assert send_datasets(server.port, batch) == [0] * len(batch)
    uids["series-split"] = str(datasets[0].SeriesInstanceUID)
    uids["series-one"] = str(datasets[1].SeriesInstanceUID)
    uids["report"] = str(report.SOPInstanceUID)
    return uids


def names(studies: dict[str, str], found: set[str]) -> set[str]:
    by_uid = {uid: name for name, uid in studies.items()}
    return {by_uid[uid] for uid in found}


RELATIONAL = b"\x01"
RELATIONAL_AND_COMBINED = b"\x01\x01"


def test_relational_keys_below_the_query_level(
    server: RunningServer, studies: dict[str, str]
) -> None:
    by_series = identifier("STUDY", StudyInstanceUID="", Modality="MR")
    pending, final = find(server.port, PATIENT_ROOT, by_series, RELATIONAL)
    assert final == 0x0000
    assert names(studies, values(pending, "StudyInstanceUID")) == {"0706-0800"}

    by_image = identifier("STUDY", StudyInstanceUID="", SOPClassUID=BASIC_TEXT_SR)
    pending, _ = find(server.port, STUDY_ROOT, by_image, RELATIONAL)
    assert names(studies, values(pending, "StudyInstanceUID")) == {"0707-1700"}

    by_image = identifier("PATIENT", PatientID="", VerificationFlag="VERIFIED")
    pending, _ = find(server.port, PATIENT_ROOT, by_image, RELATIONAL)
    assert values(pending, "PatientID") == {"DT1"}


def test_hierarchical_queries_ignore_keys_below_their_level(
    server: RunningServer, studies: dict[str, str]
) -> None:
    query = identifier("STUDY", StudyInstanceUID="", Modality="MR")
    pending, final = find(server.port, STUDY_ROOT, query)
    assert final == 0x0000
    assert len(pending) == 5
    assert all(found.Modality == "" for _status, found in pending)


def test_relational_query_still_needs_no_unique_keys_above(server: RunningServer) -> None:
    query = identifier("IMAGE", SOPInstanceUID="", StudyDate="20060706")
    pending, final = find(server.port, PATIENT_ROOT, query, RELATIONAL)
    assert final == 0x0000
    pending, final = find(server.port, PATIENT_ROOT, query)
    assert (pending, final) == ([], 0xA900)


@pytest.mark.parametrize(
    ("date", "time", "combined", "separate"),
    [
        (
            "20060705-20060707",
            "1000-1800",
            {"0705-1100", "0706-0800", "0707-1700"},
            {"0705-1100", "0707-1700"},
        ),
        ("20060705-", "1000-", {"0705-1100", "0706-0800", "0707-1700", "0707-1900"}, None),
        ("-20060707", "-1800", {"0705-0900", "0705-1100", "0706-0800", "0707-1700"}, None),
        ("20060705", "1000-1200", {"0705-1100"}, {"0705-1100"}),
        ("20060707", "17", {"0707-1700"}, {"0707-1700"}),
    ],
)
def test_combined_date_time_matching(
    server: RunningServer,
    studies: dict[str, str],
    date: str,
    time: str,
    combined: set[str],
    separate: set[str] | None,
) -> None:
    query = identifier("STUDY", StudyInstanceUID="", StudyDate=date, StudyTime=time)
    pending, _ = find(server.port, STUDY_ROOT, query, RELATIONAL_AND_COMBINED)
    assert names(studies, values(pending, "StudyInstanceUID")) == combined
    if separate is not None:
        pending, _ = find(server.port, STUDY_ROOT, query)
        assert names(studies, values(pending, "StudyInstanceUID")) == separate


def test_sequence_matching_needs_one_item_to_match_every_key(
    server: RunningServer, studies: dict[str, str]
) -> None:
    wanted = item(RequestedProcedureID="RP1", ScheduledProcedureStepID="SPS2")
    query = identifier(
        "SERIES", SeriesInstanceUID="", RequestAttributesSequence=DicomSequence([wanted])
    )
    pending, final = find(server.port, STUDY_ROOT, query, RELATIONAL)
    assert final == 0x0000
    assert values(pending, "SeriesInstanceUID") == {studies["series-one"]}

    wildcard = item(RequestedProcedureID="RP*", ScheduledProcedureStepID="")
    query.RequestAttributesSequence = DicomSequence([wildcard])
    pending, _ = find(server.port, STUDY_ROOT, query, RELATIONAL)
    assert values(pending, "SeriesInstanceUID") == {studies["series-split"], studies["series-one"]}
    split = next(
        found for _s, found in pending if found.SeriesInstanceUID == studies["series-split"]
    )
    returned = split.RequestAttributesSequence
    assert [i.RequestedProcedureID for i in returned] == ["RP1", "RP2"]
    assert [i.ScheduledProcedureStepID for i in returned] == ["SPS1", "SPS2"]


def test_sequence_matching_of_report_keys_returns_only_requested_item_attributes(
    server: RunningServer, studies: dict[str, str]
) -> None:
    concept = item(CodeValue="18748-4", CodingSchemeDesignator="")
    query = identifier(
        "IMAGE",
        StudyInstanceUID=studies["0707-1700"],
        SOPInstanceUID="",
        ConceptNameCodeSequence=DicomSequence([concept]),
    )
    pending, final = find(server.port, STUDY_ROOT, query, RELATIONAL)
    assert final == 0x0000
    assert values(pending, "SOPInstanceUID") == {studies["report"]}
    (returned,) = pending[0][1].ConceptNameCodeSequence
    assert (returned.CodeValue, returned.CodingSchemeDesignator) == ("18748-4", "LN")
    assert "CodeMeaning" not in returned

    concept.CodeValue = "11528-7"
    pending, _ = find(server.port, STUDY_ROOT, query, RELATIONAL)
    assert pending == []


def test_unsupported_optional_key_gives_ff01_and_an_empty_value(
    server: RunningServer, studies: dict[str, str]
) -> None:
    query = identifier("STUDY", StudyInstanceUID="", PatientReligiousPreference="")
    pending, final = find(server.port, STUDY_ROOT, query)
    assert final == 0x0000
    assert len(pending) == 5
    assert {status for status, _found in pending} == {0xFF01}
    assert all(found.PatientReligiousPreference == "" for _status, found in pending)

    supported = identifier("STUDY", StudyInstanceUID="", PatientName="", StudyDate="")
    pending, _ = find(server.port, STUDY_ROOT, supported)
    assert {status for status, _found in pending} == {0xFF00}


def test_acr_nema_times_are_matched_as_times(server: RunningServer) -> None:
    old = ct_dataset(patient_id="ACR", StudyTime="10:15:30")
    assert send_datasets(server.port, [old]) == [0]
    query = identifier("STUDY", StudyInstanceUID="", PatientID="ACR", StudyTime="1000-1030")
    pending, _ = find(server.port, STUDY_ROOT, query)
    assert values(pending, "StudyInstanceUID") == {str(old.StudyInstanceUID)}


def test_case_sensitive_matching_when_configured(server_factory: ServerFactory) -> None:
    server = server_factory(case_insensitive_matching=False)
    assert send_datasets(server.port, [ct_dataset(patient_name="DOE^JANE")]) == [0]
    query = identifier("STUDY", StudyInstanceUID="", PatientName="doe*")
    assert find(server.port, STUDY_ROOT, query)[0] == []
    query.PatientName = "DOE*"
    assert len(find(server.port, STUDY_ROOT, query)[0]) == 1


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("YAMADA^TAROU", {"chrH31.dcm"}),
        ("yamada*", {"chrH31.dcm"}),
        ("WANG^XIAODONG", {"chrX1.dcm"}),
        ("*^XiaoDong", {"chrX1.dcm"}),
        ("Wang^XiaoDong=王^小東", {"chrX1.dcm"}),
        ("WANG", set()),
    ],
)
def test_names_match_on_their_alphabetic_group(
    server: RunningServer, value: str, found: set[str]
) -> None:
    files = {name: PYDICOM_FILES / "charset_files" / name for name in ("chrH31.dcm", "chrX1.dcm")}
    assert {r.Status for r in send_files(server.port, files.values()).values()} == {0}
    query = identifier("STUDY", StudyInstanceUID="", PatientName=value)
    query.SpecificCharacterSet = "ISO_IR 192"
    pending, final = find(server.port, STUDY_ROOT, query)
    assert final == 0x0000
    uids = {name: str(dcmread(path).StudyInstanceUID) for name, path in files.items()}
    assert {
        name for name, uid in uids.items() if uid in values(pending, "StudyInstanceUID")
    } == found


def test_an_answer_larger_than_the_peers_pdu_arrives_whole(server: RunningServer) -> None:
    comments = "long comment " * 700  # 9,100 characters against 4 KiB PDUs
    stored = ct_dataset(patient_id="LONG1", PatientComments=comments)
    assert send_datasets(server.port, [stored]) == [0]
    query = identifier("STUDY", StudyInstanceUID="", PatientID="LONG1", PatientComments="")
    relay = Relay(server.port)  # measures every PDU on the wire
    try:
        assoc = associate(relay.port, [(STUDY_ROOT, ["1.2.840.10008.1.2.1"])], max_pdu=4096)
        answers = [found for status, found in assoc.send_c_find(query, STUDY_ROOT) if found]
        assoc.release()
    finally:
        relay.close()
    assert [found.PatientComments for found in answers] == [comments.strip()]
    [association] = relay.associations
    assert association.requestor_maximum == 4096
    assert association.oversized() == []
    assert sum(association.to_requestor) > len(comments)  # it did take several PDUs
