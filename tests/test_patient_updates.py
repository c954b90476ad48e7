"""Patient and study corrections (digest-002 items 103-104; digest-003 §7.5), on SQLite
and PostgreSQL: HL7 ADT A08 over MLLP, the REST API and the CLI change the index, every
door shows and sends the change at once with the old values in Original Attributes
Sequence, the stored files keep their bytes, and A40 merges two patients.

The C-MOVE destination is DCMTK's storescp; what it writes is read by dcmdump and by
pydicom, and compared element by element, at every sequence level, with the stored file.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
import httpx
import pytest
from conftest import RunningServer, ct_dataset, free_port, save, stored_path
from dataset_compare import differences
from dicomweb_client.api import DICOMwebClient
from hl7.client import MLLPClient
from lxml import etree
from module_servers import BACKENDS, module_server
from peers import associate, dcmtk, pacsnode_cli, send_files
from pydicom import Dataset, dcmread
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_audit import SCHEMA

PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PATIENT = 0x00100010
SEX = 0x00100040
BIRTH = 0x00100030
CHARSET = 0x00080005
OAS = 0x04000561


@dataclass
class Records:
    server: RunningServer
    hl7_port: int
    received: Path
    """Where storescp writes what is moved to it."""
    study: str
    """HL7P1's study: two instances in ISO_IR 100, with Latin-1 text, a sequence and
    private elements."""
    instances: list[str]
    duplicate_study: str
    """DUP1's study, merged into HL7P1 by A40."""
    hashes: dict[str, str]
    """The SHA-256 of each stored file as received."""


def original(number: int, study: str, series: str) -> Dataset:
    code = Dataset()
    code.CodeValue = "RPID1"
    code.CodingSchemeDesignator = "L"
    code.CodeMeaning = "Radiographie thorax à deux incidences"
    ds = ct_dataset(
        study=study,
        series=series,
        patient_id="HL7P1",
        patient_name="OLD^NAME",
        InstanceNumber=number,
        PatientSex="M",
        PatientBirthDate="19600101",
        StudyDescription="Thorax é",
        EthnicGroup="EG1",
        ProcedureCodeSequence=[code],
    )
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.add_new(0x00290010, "LO", "PACSNODE TEST")
    ds.add_new(0x00291001, "LO", "private value")
    return ds


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(scope="module", params=BACKENDS)
def records(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Records]:
    root = tmp_path_factory.mktemp(f"patients-{request.param}")
    received = root / "received"
    received.mkdir()
    scp_port, hl7_port = free_port(), free_port()
    storescp = subprocess.Popen(
        ["storescp", "+xa", "-aet", "STORESCP", "-od", str(received), str(scp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    remotes = [{"ae_title": "STORESCP", "host": "127.0.0.1", "port": scp_port}]
    try:
        _wait_for_port(scp_port)
        with module_server(root, request.param, {"hl7_port": hl7_port}, remotes) as server:
            study, series = generate_uid(), generate_uid()
            paths = [save(original(n, study, series), root / f"o{n}.dcm") for n in (1, 2)]
            duplicate = ct_dataset(patient_id="DUP1", patient_name="OLD^NAME")
            paths.append(save(duplicate, root / "dup.dcm"))
            statuses = send_files(server.port, paths)
            assert [s.Status for s in statuses.values()] == [0, 0, 0]
            instances = [str(dcmread(p).SOPInstanceUID) for p in paths]
            hashes = {uid: _hash(stored_path(server, uid)) for uid in instances}
            yield Records(
                server,
                hl7_port,
                received,
                study,
                instances[:2],
                str(duplicate.StudyInstanceUID),
                hashes,
            )
    finally:
        storescp.terminate()
        storescp.wait(10)


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def adt(event: str, pid: str, mrg: str = "") -> str:
    segments = [
        f"MSH|^~\\&|ADT|HOSPITAL|PACSNODE|RADIOLOGY|20261207101500||ADT^{event}|M{event}|P|2.5",
        f"EVN|{event}|20261207101500",
        pid,
    ]
    if mrg:
        segments.append(mrg)
    return "\r".join(segments)


def send_hl7(records: Records, message: str) -> hl7.Message:
    with MLLPClient("127.0.0.1", records.hl7_port) as client:
        reply = client.send_message(message)
    return hl7.parse(reply.decode())


def ack(reply: hl7.Message) -> str:
    return str(reply.segment("MSA")[1])


def find(port: int, model: str, level: str, **keys: str) -> list[Dataset]:
    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 192"
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(model, [ExplicitVRLittleEndian])])
    found = [a for s, a in assoc.send_c_find(identifier, model) if s.Status == 0xFF00]
    assoc.release()
    return found


def move(records: Records, study: str) -> dict[str, Path]:
    """C-MOVE a study to storescp; the files it wrote, by SOP Instance UID."""
    for old in records.received.iterdir():
        old.unlink()
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    assoc = associate(records.server.port, [(STUDY_MOVE, [ExplicitVRLittleEndian])])
    [final] = [s for s, _ in assoc.send_c_move(identifier, "STORESCP", STUDY_MOVE)][-1:]
    assoc.release()
    assert final.Status == 0x0000
    return {str(dcmread(f).SOPInstanceUID): f for f in records.received.iterdir()}


def api(records: Records, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{records.server.url}/api{path}", **kwargs)


def unchanged_elsewhere(stored: Dataset, sent: Dataset, changed: set[int]) -> list[str]:
    """What differs beyond the changed attributes and the record of their change."""
    found = differences(stored, sent, frozenset(changed))
    return [line for line in found if not line.startswith("(0400,0561)")]


def test_adt_a08_renames_the_patient_at_every_door(records: Records) -> None:
    pid = "PID|||HL7P1||NEU^NAME^Q||19600202|F"
    assert ack(send_hl7(records, adt("A08", pid))) == "AA"
    port = records.server.port
    [patient] = find(
        port, PATIENT_FIND, "PATIENT", PatientID="HL7P1", PatientName="", PatientSex=""
    )
    assert (str(patient.PatientName), patient.PatientSex) == ("NEU^NAME^Q", "F")
    qido = httpx.get(
        f"{records.server.url}/dicom-web/studies", params={"PatientID": "HL7P1"}
    ).json()
    assert [q["00100010"]["Value"][0]["Alphabetic"] for q in qido] == ["NEU^NAME^Q"]
    assert api(records, "GET", "/patients/HL7P1").json()["PatientName"] == "NEU^NAME^Q"
    url = f"{records.server.url}/dicom-web/studies/{records.study}/metadata"
    for document in httpx.get(url).json():
        assert document["00100010"]["Value"] == [{"Alphabetic": "NEU^NAME^Q"}]
        [item] = document["04000561"]["Value"]
        previous = item["04000550"]["Value"][0]
        assert previous["00100010"]["Value"] == [{"Alphabetic": "OLD^NAME"}]

    files = move(records, records.study)
    assert sorted(files) == sorted(records.instances)
    for uid, path in files.items():
        sent, stored = dcmread(path), dcmread(stored_path(records.server, uid))
        assert (str(sent.PatientName), sent.PatientSex, sent.PatientBirthDate) == (
            "NEU^NAME^Q",
            "F",
            "19600202",
        )
        assert sent.SpecificCharacterSet == "ISO_IR 100"  # the new name fits it
        [item] = sent.OriginalAttributesSequence
        assert item.ReasonForTheAttributeModification == "CORRECT"
        [previous] = item.ModifiedAttributesSequence
        assert (str(previous.PatientName), previous.PatientSex) == ("OLD^NAME", "M")
        assert previous.PatientBirthDate == "19600101"
        assert unchanged_elsewhere(stored, sent, {PATIENT, SEX, BIRTH}) == []
        # the stored file keeps the bytes it was received with
        assert _hash(stored_path(records.server, uid)) == records.hashes[uid]
    dumped = dcmtk("dcmdump", "+U8", str(next(iter(files.values()))))
    assert dumped.returncode == 0, dumped.stderr
    assert "(0010,0010) PN [NEU^NAME^Q]" in dumped.stdout
    assert "(0400,0565) CS [CORRECT]" in dumped.stdout
    assert "(0010,0010) PN [OLD^NAME]" in dumped.stdout  # inside the sequence


def test_wado_rs_and_media_export_carry_the_correction(records: Records, tmp_path: Path) -> None:
    client = DICOMwebClient(url=f"{records.server.url}/dicom-web")
    retrieved = client.retrieve_study(records.study)
    assert len(retrieved) == 2
    for sent in retrieved:
        assert str(sent.PatientName) == "NEU^NAME^Q"
        previous = sent.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
        assert str(previous.PatientName) == "OLD^NAME"
    out = tmp_path / "cd"
    config = str(records.server.config_path)
    exported = pacsnode_cli("export-media", str(out), "--study", records.study, "--config", config)
    assert exported.returncode == 0, exported.stderr
    dicomdir = dcmread(out / "DICOMDIR")
    records_of = dicomdir.DirectoryRecordSequence
    [patient] = [r for r in records_of if r.DirectoryRecordType == "PATIENT"]
    assert str(patient.PatientName) == "NEU^NAME^Q"
    exported_files = list(FileSet(dicomdir))
    assert len(exported_files) == 2
    for instance in exported_files:
        assert str(instance.load().PatientName) == "NEU^NAME^Q"


def test_hl7_messages_that_cannot_be_applied_are_answered(records: Records) -> None:
    assert ack(send_hl7(records, adt("A08", "PID|||HL7P1||X^Y||1960-13"))) == "AR"
    nobody = send_hl7(records, adt("A31", "PID|||NOBODY9||X^Y"))
    assert ack(nobody) == "AA"  # nothing of that patient here: nothing to change
    assert ack(send_hl7(records, adt("A03", "PID|||HL7P1"))) == "AR"


def test_a_name_beyond_the_character_set_switches_it_to_utf8(records: Records) -> None:
    changed = api(records, "PATCH", "/patients/HL7P1", json={"PatientName": "Ωμέγα^Άλφα"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["changed"] == {"PatientName": "Ωμέγα^Άλφα"}
    files = move(records, records.study)
    for uid, path in files.items():
        sent, stored = dcmread(path), dcmread(stored_path(records.server, uid))
        assert sent.SpecificCharacterSet == "ISO_IR 192"
        assert str(sent.PatientName) == "Ωμέγα^Άλφα"
        assert "Thorax \xe9".encode() in path.read_bytes()  # Latin-1 text now in UTF-8
        [item] = sent.OriginalAttributesSequence
        previous = item.ModifiedAttributesSequence[0]
        assert (previous.SpecificCharacterSet, str(previous.PatientName)) == (
            "ISO_IR 100",
            "OLD^NAME",
        )
        # decoded, every other value (the study description, the code meaning in its
        # sequence, the private elements) is what was stored
        changed_tags = {PATIENT, SEX, BIRTH, CHARSET}
        assert unchanged_elsewhere(stored, sent, changed_tags) == []
    [found] = find(records.server.port, PATIENT_FIND, "PATIENT", PatientName="ΩΜΈΓΑ*")
    assert str(found.PatientName) == "Ωμέγα^Άλφα"


def test_study_attributes_change_through_rest_and_the_cli(records: Records) -> None:
    body = {"StudyDescription": "Thorax PA", "AccessionNumber": "ACC-NEW"}
    changed = api(records, "PATCH", f"/studies/{records.study}", json=body)
    assert changed.status_code == 200, changed.text
    cli = pacsnode_cli(
        "study",
        "update",
        records.study,
        "--referring-physician",
        "HOUSE^GREGORY",
        "--config",
        str(records.server.config_path),
    )
    assert cli.returncode == 0, cli.stderr
    [study] = find(
        records.server.port,
        STUDY_FIND,
        "STUDY",
        StudyInstanceUID=records.study,
        StudyDescription="",
        AccessionNumber="",
        ReferringPhysicianName="",
    )
    assert (study.StudyDescription, study.AccessionNumber) == ("Thorax PA", "ACC-NEW")
    assert str(study.ReferringPhysicianName) == "HOUSE^GREGORY"
    for path in move(records, records.study).values():
        sent = dcmread(path)
        assert (sent.StudyDescription, sent.AccessionNumber) == ("Thorax PA", "ACC-NEW")
    too_long = api(
        records, "PATCH", f"/studies/{records.study}", json={"AccessionNumber": "A" * 17}
    )
    assert (too_long.status_code, too_long.json()["field"]) == (400, "AccessionNumber")
    assert api(records, "PATCH", "/studies/1.2.3.999", json=body).status_code == 404
    refused = api(records, "PATCH", "/patients/HL7P1", json={"PatientID": "X"})
    assert (refused.status_code, refused.json()["field"]) == (400, "PatientID")


def test_adt_a40_merges_two_patients(records: Records) -> None:
    message = adt("A40", "PID|||HL7P1||NEU^NAME^Q", "MRG|DUP1")
    assert ack(send_hl7(records, message)) == "AA"
    port = records.server.port
    assert find(port, PATIENT_FIND, "PATIENT", PatientID="DUP1") == []
    studies = find(port, STUDY_FIND, "STUDY", PatientID="HL7P1", StudyInstanceUID="")
    assert {str(s.StudyInstanceUID) for s in studies} == {records.study, records.duplicate_study}
    qido = httpx.get(
        f"{records.server.url}/dicom-web/studies", params={"PatientID": "HL7P1"}
    ).json()
    assert len(qido) == 2
    assert api(records, "GET", "/patients/DUP1").status_code == 404
    assert api(records, "GET", "/patients/HL7P1").json()["NumberOfPatientRelatedStudies"] == 2
    [path] = move(records, records.duplicate_study).values()
    sent = dcmread(path)
    assert (sent.PatientID, str(sent.PatientName)) == ("HL7P1", "Ωμέγα^Άλφα")
    previous = sent.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
    assert previous.PatientID == "DUP1"


def test_a_patient_merged_into_one_not_held_takes_its_new_identity(
    records: Records, tmp_path: Path
) -> None:
    lone = save(ct_dataset(patient_id="LONE1", patient_name="LONE^LY"), tmp_path / "lone.dcm")
    assert send_files(records.server.port, [lone])[lone].Status == 0
    merged = api(records, "POST", "/patients/LONE1/merge", json={"PatientID": "FRESH1"})
    assert merged.status_code == 200, merged.text
    assert merged.json()["studies"] == 1
    port = records.server.port
    assert find(port, PATIENT_FIND, "PATIENT", PatientID="LONE1") == []
    [fresh] = find(port, PATIENT_FIND, "PATIENT", PatientID="FRESH1", PatientName="")
    assert str(fresh.PatientName) == "LONE^LY"
    itself = api(records, "POST", "/patients/FRESH1/merge", json={"PatientID": "FRESH1"})
    assert itself.status_code == 400
    assert (
        api(records, "POST", "/patients/NOBODY/merge", json={"PatientID": "X"}).status_code == 404
    )


def audit_messages(records: Records, event: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        found = api(records, "GET", "/audit", params={"event": event}).json()
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.1)


def details(message: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each participant object's details, by object ID, decoded."""
    import base64

    xml = etree.fromstring(message["xml"].encode())
    assert SCHEMA.validate(xml), SCHEMA.error_log
    return {
        str(o.get("ParticipantObjectID")): {
            str(d.get("type")): base64.b64decode(d.get("value")).decode()
            for d in o.findall("ParticipantObjectDetail")
        }
        for o in xml.findall("ParticipantObjectIdentification")
    }


def test_patient_record_audit_messages_carry_the_changed_values(records: Records) -> None:
    records_audited = audit_messages(records, "110110", 4)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for message in records_audited:
        by_action.setdefault(str(message["action"]), []).append(message)
    renamed = [m for m in by_action["U"] if m["user"] == "ADT" and "PatientSex" in m["xml"]]
    [a08] = renamed
    assert details(a08)["HL7P1"] == {
        "PatientName": "NEU^NAME^Q",
        "PatientSex": "F",
        "PatientBirthDate": "19600202",
    }
    merged = [m for m in by_action["U"] if "(merged)" in m["xml"] and "HL7P1" in m["patients"]]
    assert details(merged[0])["HL7P1"]["PatientID (merged)"] == "DUP1"
    deleted = [m for m in by_action["D"] if m["patients"] == ["DUP1"]]
    assert len(deleted) == 1 and details(deleted[0])["DUP1"] == {}
    updates = [m for m in audit_messages(records, "110103", 2) if m["action"] == "U"]
    changed = [details(m)[records.study] for m in updates]
    assert {"StudyDescription": "Thorax PA", "AccessionNumber": "ACC-NEW"} in changed
    assert {"ReferringPhysicianName": "HOUSE^GREGORY"} in changed  # by the CLI


def test_other_countries_keep_ethnic_group(records: Records) -> None:
    """digest-003 item 26: the French clearing applies to France only."""
    uid = records.instances[0]
    assert dcmread(stored_path(records.server, uid)).EthnicGroup == "EG1"
    [found] = find(records.server.port, PATIENT_FIND, "PATIENT", PatientID="HL7P1", EthnicGroup="")
    assert found.EthnicGroup == "EG1"
