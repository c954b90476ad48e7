"""Modality Worklist: items made through the REST API and the CLI, found by DCMTK
``findscu -W`` and pynetdicom, and hidden once their procedure step is done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ServerFactory
from peers import dcmtk, pacsnode_cli
from pydicom import Dataset, dcmread
from pynetdicom import AE

MWL = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"


def item(
    patient: str,
    name: str,
    accession: str,
    modality: str,
    station: str,
    date: str,
    time: str,
    physician: str = "",
) -> dict[str, Any]:
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = time
    step.ScheduledProcedureStepID = f"SPS-{accession}"
    step.ScheduledProcedureStepDescription = f"{modality} exam"
    if physician:
        step.ScheduledPerformingPhysicianName = physician
    ds = Dataset()
    ds.PatientID = patient
    ds.PatientName = name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = accession
    ds.RequestedProcedureID = f"RP-{accession}"
    ds.RequestedProcedureDescription = f"{modality} of the chest"
    ds.ScheduledProcedureStepSequence = [step]
    return ds.to_json_dict()


ITEMS = [
    item("P1", "Müller^Anna", "A1", "CT", "CT01", "20261124", "080000", "HOUSE^GREGORY"),
    item("P2", "SMITH^JOHN", "A2", "MR", "MR01", "20261124", "103000"),
    item("P3", "SMITHERS^JANE", "A3", "CT", "CT01", "20261125", "143000", "WILSON^JAMES"),
    item("P4", "DOE^JOHN", "A4", "US", "US01", "20261126", "090000"),
]


@pytest.fixture
def scheduled(server: RunningServer) -> dict[str, int]:
    """The four items, posted to the REST API; accession to item id."""
    ids = {}
    for body in ITEMS:
        response = httpx.post(f"{server.url}/api/worklist", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["location"] == f"/api/worklist/{created['id']}"
        ids[created["dataset"]["00080050"]["Value"][0]] = created["id"]
    return ids


def worklist_query(port: int, identifier: Dataset) -> tuple[list[Dataset], int]:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(MWL)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSNODE")
    assert assoc.is_established
    found, final = [], -1
    for status, answer in assoc.send_c_find(identifier, MWL):
        if status.Status in (0xFF00, 0xFF01):
            found.append(answer)
        else:
            final = int(status.Status)
    assoc.release()
    return found, final


def query(charset: str = "", **step_keys: str) -> Dataset:
    """A worklist identifier asking for the usual return keys; ``step_keys`` go in the
    Scheduled Procedure Step item, ``top_*`` ones at the top level."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = ""
    ds.PatientID = ""
    ds.AccessionNumber = ""
    ds.RequestedProcedureDescription = ""
    ds.StudyInstanceUID = ""
    step = Dataset()
    step.Modality = ""
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartDate = ""
    step.ScheduledProcedureStepStartTime = ""
    for keyword, value in step_keys.items():
        if keyword.startswith("top_"):
            setattr(ds, keyword[4:], value)
        else:
            setattr(step, keyword, value)
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def accessions(found: list[Dataset]) -> set[str]:
    return {str(answer.AccessionNumber) for answer in found}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, {"A1", "A2", "A3", "A4"}),
        ({"Modality": "CT"}, {"A1", "A3"}),
        ({"Modality": "ct"}, {"A1", "A3"}),  # case-insensitive, as synedra lists
        ({"ScheduledStationAETitle": "CT01"}, {"A1", "A3"}),
        ({"ScheduledProcedureStepStartDate": "20261124"}, {"A1", "A2"}),
        ({"ScheduledProcedureStepStartDate": "20261125-"}, {"A3", "A4"}),
        (
            {
                "ScheduledProcedureStepStartDate": "20261124",
                "ScheduledProcedureStepStartTime": "1000-",
            },
            {"A2"},
        ),
        ({"ScheduledPerformingPhysicianName": "wilson*"}, {"A3"}),
        ({"Modality": "CT", "ScheduledStationAETitle": "MR01"}, set()),
        ({"top_PatientName": "SMITH*"}, {"A2", "A3"}),
        ({"top_PatientName": "smith^john"}, {"A2"}),
        ({"top_PatientID": "P4"}, {"A4"}),
        ({"top_AccessionNumber": "A?"}, {"A1", "A2", "A3", "A4"}),
        ({"top_PatientSex": "M"}, set()),
    ],
)
def test_worklist_matching(
    server: RunningServer, scheduled: dict[str, int], keys: dict[str, str], expected: set[str]
) -> None:
    found, final = worklist_query(server.port, query(**keys))
    assert final == 0x0000
    assert accessions(found) == expected


def test_answers_return_requested_keys_only(
    server: RunningServer, scheduled: dict[str, int]
) -> None:
    found, _ = worklist_query(server.port, query(top_AccessionNumber="A1"))
    [answer] = found
    assert str(answer.PatientName) == "Müller^Anna"
    assert answer.RequestedProcedureDescription == "CT of the chest"
    assert answer.StudyInstanceUID  # made when the item was scheduled
    [step] = answer.ScheduledProcedureStepSequence
    assert (step.Modality, step.ScheduledStationAETitle) == ("CT", "CT01")
    assert "ScheduledProcedureStepDescription" not in step  # not asked for
    assert "PatientBirthDate" not in answer
    assert answer.SpecificCharacterSet == "ISO_IR 192"


def test_names_in_a_latin_1_query(server: RunningServer, scheduled: dict[str, int]) -> None:
    found, _ = worklist_query(server.port, query("ISO_IR 100", top_PatientName="MÜLLER*"))
    assert accessions(found) == {"A1"}


def test_dcmtk_findscu_worklist(
    server: RunningServer, scheduled: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "responses"
    out.mkdir()
    result = dcmtk(
        "findscu", "-W", "-aet", "CT01", "-aec", "PACSNODE", "-X", "-od", str(out),
        "-k", "PatientName", "-k", "AccessionNumber", "-k", "PatientID",
        "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
        "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
        "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261124-20261125",
        "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
        "127.0.0.1", str(server.port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answers = [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]
    assert accessions(answers) == {"A1", "A3"}
    for answer in answers:
        [step] = answer.ScheduledProcedureStepSequence
        assert step.ScheduledProcedureStepID == f"SPS-{answer.AccessionNumber}"


def mpps(port: int, study_uid: str, step_id: str, status: str) -> None:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSNODE")
    step = Dataset()
    step.PerformedProcedureStepStatus = "IN PROGRESS"
    scheduled = Dataset()
    scheduled.StudyInstanceUID = study_uid
    scheduled.ScheduledProcedureStepID = step_id
    step.ScheduledStepAttributesSequence = [scheduled]
    uid = "1.2.3.4.5.6.7"
    assert assoc.send_n_create(step, MPPS, uid)[0].Status == 0
    done = Dataset()
    done.PerformedProcedureStepStatus = status
    assert assoc.send_n_set(done, MPPS, uid)[0].Status == 0
    assoc.release()


@pytest.mark.parametrize("hide", [True, False])
def test_items_of_a_finished_step_are_hidden(server_factory: ServerFactory, hide: bool) -> None:
    server = server_factory(worklist_hide_finished=hide)
    for body in ITEMS[:2]:
        assert httpx.post(f"{server.url}/api/worklist", json=body).status_code == 201
    found, _ = worklist_query(server.port, query(top_AccessionNumber="A1"))
    study_uid = str(found[0].StudyInstanceUID)
    mpps(server.port, study_uid, "SPS-A1", "COMPLETED")
    found, _ = worklist_query(server.port, query())
    assert accessions(found) == ({"A2"} if hide else {"A1", "A2"})
    statuses = {
        i["dataset"]["00080050"]["Value"][0]: i["status"]
        for i in httpx.get(f"{server.url}/api/worklist").json()
    }
    assert statuses == {"A1": "COMPLETED", "A2": "SCHEDULED"}


def test_rest_api_reads_replaces_and_deletes(
    server: RunningServer, scheduled: dict[str, int]
) -> None:
    base = f"{server.url}/api/worklist"
    pk = scheduled["A4"]
    one = httpx.get(f"{base}/{pk}").json()
    assert one["status"] == "SCHEDULED" and one["dataset"]["00100020"]["Value"] == ["P4"]
    changed = dict(one["dataset"])
    changed["00100020"] = {"vr": "LO", "Value": ["P4-NEW"]}
    assert httpx.put(f"{base}/{pk}", json=changed).status_code == 200
    found, _ = worklist_query(server.port, query(top_PatientID="P4-NEW"))
    assert accessions(found) == {"A4"}
    assert worklist_query(server.port, query(top_PatientID="P4"))[0] == []
    assert httpx.delete(f"{base}/{pk}").status_code == 204
    assert httpx.get(f"{base}/{pk}").status_code == 404
    assert httpx.delete(f"{base}/{pk}").status_code == 404
    assert accessions(worklist_query(server.port, query())[0]) == {"A1", "A2", "A3"}
    assert httpx.post(base, content=b"not json").status_code == 400
    no_step = {"00100020": {"vr": "LO", "Value": ["P9"]}}
    refused = httpx.post(base, json=no_step)
    assert refused.status_code == 400 and "Scheduled Procedure Step" in refused.json()["error"]


def test_cli_adds_lists_and_deletes(server: RunningServer) -> None:
    config = str(server.config_path)
    added = pacsnode_cli(
        "worklist", "add", "--patient-id", "CLI1", "--patient-name", "CLI^PATIENT",
        "--accession", "ACLI", "--modality", "DX", "--station-ae", "DX01",
        "--start", "202611241015", "--procedure", "Hand", "-c", config,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    pk = added.stdout.split()[2].rstrip(":")
    found, _ = worklist_query(server.port, query(ScheduledStationAETitle="DX01"))
    [answer] = found
    step = answer.ScheduledProcedureStepSequence[0]
    assert (answer.AccessionNumber, step.Modality) == ("ACLI", "DX")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20261124",
        "101500",
    )
    listed = pacsnode_cli("worklist", "list", "-c", config)
    assert "CLI^PATIENT" in listed.stdout and "DX01" in listed.stdout
    assert pacsnode_cli("worklist", "delete", pk, "-c", config).returncode == 0
    assert worklist_query(server.port, query(ScheduledStationAETitle="DX01"))[0] == []
    assert pacsnode_cli("worklist", "delete", pk, "-c", config).returncode == 1
