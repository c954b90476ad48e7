"""Assigning authorities and the issuer heuristic (digest-002 §8.3; items 29-30, 88-90,
128, 135), on SQLite and PostgreSQL: two sites whose Patient IDs overlap stay two
patients, and each requestor finds, retrieves and schedules its own.

Three senders store patient P100: SITE_A (fallback authority 1), SITE_B (fallback 2)
and MODALITY (no configured AE: the default authority 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, ct_dataset, dataset_bytes, save, stored_path
from module_servers import BACKENDS, module_server
from peers import associate, pacsnode_cli, send_files
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from test_retrieve_scp import Receiver
from test_worklist import MWL

PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
MPPS = "1.2.840.10008.3.1.2.3.3"
AUTHORITIES = [
    {"id": 0, "issuer": "HOME"},
    {
        "id": 1,
        "issuer": "SITEA",
        "universal_entity_id": "1.2.3.1",
        "universal_entity_id_type": "ISO",
    },
    {"id": 2, "issuer": "SITEB"},
]
NAMES = {"SITE_A": "ALPHA^ANNA", "SITE_B": "BETA^BERT", "MODALITY": "GAMMA^GUS"}


@dataclass
class Sites:
    server: RunningServer
    receiver: Receiver
    sent: dict[str, Path] = field(default_factory=dict)
    """The file each sender sent, by calling AE title."""
    studies: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module", params=BACKENDS)
def sites(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sites]:
    root = tmp_path_factory.mktemp(f"identity-{request.param}")
    receiver = Receiver([ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    remotes = [
        {"ae_title": "SITE_A", "host": "127.0.0.1", "port": 104, "fallback_authority": 1},
        {"ae_title": "SITE_B", "host": "127.0.0.1", "port": 104, "fallback_authority": 2},
        {"ae_title": "RECEIVER", "host": "127.0.0.1", "port": receiver.port},
    ]
    try:
        with module_server(
            root, request.param, {"issuer_heuristic": True}, remotes, {"authority": AUTHORITIES}
        ) as server:
            loaded = Sites(server, receiver)
            for sender, name in NAMES.items():
                ds = ct_dataset(patient_id="P100", patient_name=name, AdmissionID=f"V-{sender}")
                path = save(ds, root / f"{sender}.dcm")
                assert send_files(server.port, [path], calling_ae=sender)[path].Status == 0
                loaded.sent[sender] = path
                loaded.studies[sender] = str(ds.StudyInstanceUID)
            yield loaded
    finally:
        receiver.server.shutdown()


def find(port: int, calling_ae: str, model: str = PATIENT_FIND, **keys: str) -> list[Dataset]:
    """A C-FIND from ``calling_ae``; its matches, after a success."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientName = ""
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(model, [ExplicitVRLittleEndian])], calling_ae=calling_ae)
    assert assoc.is_established
    found, final = [], -1
    for status, answer in assoc.send_c_find(identifier, model):
        if status.Status in (0xFF00, 0xFF01):
            found.append(answer)
        else:
            final = int(status.Status)
    assoc.release()
    assert final == 0x0000
    return found


def names(found: list[Dataset]) -> list[str]:
    return sorted(str(answer.PatientName) for answer in found)


def test_overlapping_patient_ids_stay_apart(sites: Sites) -> None:
    answer = httpx.get(f"{sites.server.url}/api/patients", params={"PatientID": "P100"}).json()
    held = {(p["IssuerOfPatientID"], p["PatientName"]) for p in answer["items"]}
    assert held == {("SITEA", "ALPHA^ANNA"), ("SITEB", "BETA^BERT"), ("HOME", "GAMMA^GUS")}


@pytest.mark.parametrize(
    ("calling_ae", "expected"),
    [
        ("SITE_A", ["ALPHA^ANNA"]),  # its fallback authority
        ("SITE_B", ["BETA^BERT"]),
        ("#SESSION7", ["GAMMA^GUS"]),  # a session AE title: authority 0
        ("UNLISTED", ["GAMMA^GUS"]),  # an AE without a fallback: authority 0 too
    ],
)
def test_each_requestor_finds_its_own_patient(
    sites: Sites, calling_ae: str, expected: list[str]
) -> None:
    assert names(find(sites.server.port, calling_ae, PatientID="P100")) == expected


def test_qido_as_a_remote_ae_resolves_as_that_ae(sites: Sites) -> None:
    def qido(root: str) -> list[str]:
        url = f"{sites.server.url}{root}/studies"
        found = httpx.get(url, params={"PatientID": "P100"}).json()
        return sorted(s["00100010"]["Value"][0]["Alphabetic"] for s in found)

    assert qido("/dicom-web/aets/SITE_A") == ["ALPHA^ANNA"]
    assert qido("/dicom-web") == ["ALPHA^ANNA", "BETA^BERT", "GAMMA^GUS"]  # no AE: as written


def test_an_issuer_in_the_request_wins_and_an_unknown_one_matches_nothing(sites: Sites) -> None:
    port = sites.server.port
    assert names(find(port, "SITE_A", PatientID="P100", IssuerOfPatientID="SITEB")) == ["BETA^BERT"]
    # an authority is known by its Universal Entity ID too
    assert names(find(port, "SITE_B", PatientID="P100", IssuerOfPatientID="1.2.3.1")) == [
        "ALPHA^ANNA"
    ]
    assert find(port, "SITE_A", PatientID="P100", IssuerOfPatientID="NOWHERE") == []
    # without a Patient ID the heuristic has nothing to resolve
    assert len(find(port, "SITE_A", PatientName="*A*")) == 3


def retrieve(port: int, calling_ae: str, destination: str, **keys: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(PATIENT_MOVE, [ExplicitVRLittleEndian])], calling_ae=calling_ae)
    responses = [status for status, _ in assoc.send_c_move(identifier, destination, PATIENT_MOVE)]
    assoc.release()
    return responses[-1]


def test_a_move_selects_by_the_resolved_issuer_and_sends_it(sites: Sites) -> None:
    sites.receiver.received.clear()
    final = retrieve(sites.server.port, "SITE_B", "RECEIVER", PatientID="P100")
    assert (final.Status, final.NumberOfCompletedSuboperations) == (0x0000, 1)
    [moved] = sites.receiver.received.values()
    assert str(moved.PatientName) == "BETA^BERT"
    # The index's issuer goes out; the object's own (none) is kept as PS3.3 C.12.1 says.
    assert moved.IssuerOfPatientID == "SITEB"
    [item] = moved.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "COERCE"
    assert item.ModifyingSystem == "PACSNODE"
    assert item.ModifiedAttributesSequence[0].IssuerOfPatientID in (None, "")
    # ... while the stored file keeps the bytes SITE_B sent.
    stored = stored_path(sites.server, str(moved.SOPInstanceUID))
    sent = dataset_bytes(sites.sent["SITE_B"])
    assert hashlib.sha256(dataset_bytes(stored)).digest() == hashlib.sha256(sent).digest()
    unknown = retrieve(
        sites.server.port, "SITE_B", "RECEIVER", PatientID="P100", IssuerOfPatientID="X"
    )
    assert (unknown.Status, unknown.NumberOfCompletedSuboperations) == (0x0000, 0)


def test_a_get_carries_the_authority_of_its_requestor(sites: Sites) -> None:
    received: list[Dataset] = []
    ae = AE(ae_title="SITE_A")
    ae.add_requested_context(PATIENT_GET, [ExplicitVRLittleEndian])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", [ExplicitVRLittleEndian])
    from pynetdicom import build_role, evt

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    assoc = ae.associate(
        "127.0.0.1",
        sites.server.port,
        ae_title="PACSNODE",
        ext_neg=[build_role("1.2.840.10008.5.1.4.1.1.2", scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = "P100"
    statuses = [status.Status for status, _ in assoc.send_c_get(identifier, PATIENT_GET)]
    assoc.release()
    assert statuses[-1] == 0x0000
    [got] = received
    assert (str(got.PatientName), got.IssuerOfPatientID) == ("ALPHA^ANNA", "SITEA")
    [qualifiers] = got.IssuerOfPatientIDQualifiersSequence
    assert (qualifiers.UniversalEntityID, qualifiers.UniversalEntityIDType) == ("1.2.3.1", "ISO")
    # the Admission ID got its issuer from SITE_A's configuration too
    [admission] = got.IssuerOfAdmissionIDSequence
    assert admission.LocalNamespaceEntityID == "SITEA"


def worklist_find(port: int, calling_ae: str, **keys: str) -> list[Dataset]:
    identifier = Dataset()
    identifier.PatientName = ""
    identifier.IssuerOfPatientID = ""
    identifier.IssuerOfAccessionNumberSequence = []
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    step = Dataset()
    step.Modality = ""
    identifier.ScheduledProcedureStepSequence = [step]
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(MWL)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSNODE")
    found = [a for s, a in assoc.send_c_find(identifier, MWL) if s.Status in (0xFF00, 0xFF01)]
    assoc.release()
    return found


def test_worklist_items_get_the_default_issuers_and_queries_resolve_theirs(sites: Sites) -> None:
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledProcedureStepStartDate = "20261124"
    item = Dataset()
    item.PatientID = "P100"
    item.PatientName = "GAMMA^GUS"
    item.AccessionNumber = "ACC-H1"
    item.ScheduledProcedureStepSequence = [step]
    made = httpx.post(f"{sites.server.url}/api/worklist", json=item.to_json_dict())
    assert made.status_code == 201
    kept = Dataset.from_json(made.json()["dataset"])
    assert kept.IssuerOfPatientID == "HOME"
    assert kept.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID == "HOME"
    port = sites.server.port
    [found] = worklist_find(port, "#SESSION7", PatientID="P100")
    assert found.IssuerOfPatientID == "HOME"
    assert worklist_find(port, "SITE_A", PatientID="P100") == []
    assert len(worklist_find(port, "#WS", AccessionNumber="ACC-H1")) == 1
    assert worklist_find(port, "SITE_B", AccessionNumber="ACC-H1") == []
    assert worklist_find(port, "#WS", PatientID="P100", IssuerOfPatientID="NOWHERE") == []


def test_an_mpps_accession_number_gets_its_issuer(sites: Sites) -> None:
    ae = AE(ae_title="SITE_B")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", sites.server.port, ae_title="PACSNODE")
    step = Dataset()
    step.StudyInstanceUID = sites.studies["SITE_B"]
    step.AccessionNumber = "ACC-B7"
    created = Dataset()
    created.PatientID = "P100"
    created.PerformedProcedureStepStatus = "IN PROGRESS"
    created.PerformedProcedureStepID = "PPS-B7"
    created.ScheduledStepAttributesSequence = [step]
    uid = generate_uid()
    status, _ = assoc.send_n_create(created, MPPS, uid)
    assoc.release()
    assert status.Status == 0x0000
    kept = httpx.get(f"{sites.server.url}/api/mpps/{uid}").json()["dataset"]
    [scheduled] = Dataset.from_json(kept).ScheduledStepAttributesSequence
    assert scheduled.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID == "SITEB"


def test_authorities_and_fallbacks_added_at_run_time(sites: Sites, tmp_path: Path) -> None:
    server = sites.server
    added = httpx.put(f"{server.url}/api/authorities/3", json={"issuer": "SITEC"})
    assert added.status_code == 201, added.text
    assert added.json() == {
        "id": 3,
        "issuer": "SITEC",
        "universal_entity_id": "",
        "universal_entity_id_type": "",
        "source": "database",
    }
    refused = httpx.put(f"{server.url}/api/authorities/4", json={"issuer": "X\\Y"})
    assert (refused.status_code, refused.json()["field"]) == (400, "issuer")
    assert httpx.delete(f"{server.url}/api/authorities/0").status_code == 409
    remote = {"host": "127.0.0.1", "port": 104, "fallback_authority": 9}
    unknown = httpx.put(f"{server.url}/api/remote/SITE_C", json=remote)
    assert (unknown.status_code, unknown.json()["field"]) == (400, "fallback_authority")
    remote["fallback_authority"] = 3
    assert httpx.put(f"{server.url}/api/remote/SITE_C", json=remote).status_code == 201
    path = save(ct_dataset(patient_id="P100", patient_name="DELTA^DORA"), tmp_path / "c.dcm")
    assert send_files(server.port, [path], calling_ae="SITE_C")[path].Status == 0
    assert names(find(server.port, "SITE_C", PatientID="P100")) == ["DELTA^DORA"]
    listed = pacsnode_cli("authority", "list", "--config", str(server.config_path))
    assert listed.returncode == 0, listed.stderr
    assert "SITEC" in listed.stdout and "database" in listed.stdout
    assert httpx.delete(f"{server.url}/api/authorities/3").status_code == 204
