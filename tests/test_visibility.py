"""Per-AE visibility (syngo.share's "data visibility" per calling AE): a remote AE with
``visible`` finds and retrieves only the studies matching it; others look missing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port
from peers import associate, send_datasets
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

from pacsnode.archive.core import Archive
from pacsnode.archive.remotes import RemoteError, remote_as_json, remote_from_json
from pacsnode.config import ConfigError, RemoteAE, Settings, load_settings

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
CT = "1.2.840.10008.5.1.4.1.1.2"
RESTRICTED = "CLINICA"


class Receiver:
    """A C-MOVE destination that records every SOP Instance UID it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[str] = []
        ae = AE(ae_title="RECEIVER")
        ae.supported_contexts = StoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: evt.Event) -> int:
        self.received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


@pytest.fixture
def archive(server_factory: ServerFactory, receiver: Receiver, database_url: str) -> RunningServer:
    """On SQLite and PostgreSQL: the restriction is SQL that both must run alike."""
    return server_factory(
        database_url=database_url,
        remotes=[
            {
                "ae_title": RESTRICTED,
                "host": "127.0.0.1",
                "port": 104,
                "visible": {"InstitutionName": "clinic a*"},
            },
            {"ae_title": "RECEIVER", "host": "127.0.0.1", "port": receiver.port},
        ],
    )


@pytest.fixture
def studies(archive: RunningServer) -> dict[str, str]:
    """Two studies of one patient, from two institutions; each study's UID by clinic."""
    uids = {"A": generate_uid(), "B": generate_uid()}
    series = generate_uid()
    datasets = [
        ct_dataset(study=uids["A"], series=series, InstitutionName="CLINIC A NORTH"),
        ct_dataset(study=uids["A"], series=series, InstitutionName="CLINIC A NORTH"),
        ct_dataset(study=uids["B"], InstitutionName="CLINIC B"),
    ]
    assert send_datasets(archive.port, datasets) == [0, 0, 0]
    return uids


def find(
    port: int, calling_ae: str, model: str, relational: bool = False, **keys: str
) -> list[Dataset]:
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    negotiation = SOPClassExtendedNegotiation()
    negotiation.sop_class_uid = model
    negotiation.service_class_application_information = b"\x01" if relational else b"\x00"
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(model, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSNODE", ext_neg=[negotiation])
    assert assoc.is_established
    try:
        answers = list(assoc.send_c_find(identifier, model))
    finally:
        assoc.release()
    assert answers[-1][0].Status == 0x0000
    return [ds for status, ds in answers if status.Status in (0xFF00, 0xFF01)]


def study_uids(answers: list[Dataset]) -> set[str]:
    return {str(ds.StudyInstanceUID) for ds in answers}


def test_restricted_ae_finds_only_its_studies(
    archive: RunningServer, studies: dict[str, str]
) -> None:
    answers = find(
        archive.port, RESTRICTED, STUDY_ROOT_FIND, QueryRetrieveLevel="STUDY", StudyInstanceUID=""
    )
    assert study_uids(answers) == {studies["A"]}


@pytest.mark.parametrize("level", ["SERIES", "IMAGE"])
def test_below_an_invisible_study_nothing_is_found(
    archive: RunningServer, studies: dict[str, str], level: str
) -> None:
    found = {}
    for clinic, study_uid in studies.items():
        keys = {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study_uid}
        (series,) = find(archive.port, "WS", STUDY_ROOT_FIND, **keys, SeriesInstanceUID="")
        if level == "IMAGE":
            keys |= {"QueryRetrieveLevel": "IMAGE", "SeriesInstanceUID": series.SeriesInstanceUID}
            keys |= {"SOPInstanceUID": ""}
        else:
            keys |= {"SeriesInstanceUID": ""}
        found[clinic] = len(find(archive.port, RESTRICTED, STUDY_ROOT_FIND, **keys))
    assert found == {"A": {"SERIES": 1, "IMAGE": 2}[level], "B": 0}


def test_patient_root_hides_patients_without_a_visible_study(
    archive: RunningServer, studies: dict[str, str]
) -> None:
    other = ct_dataset(patient_id="PAT002", InstitutionName="CLINIC B")
    assert send_datasets(archive.port, [other]) == [0]
    patients = find(
        archive.port, RESTRICTED, PATIENT_ROOT_FIND, QueryRetrieveLevel="PATIENT", PatientID=""
    )
    assert [str(ds.PatientID) for ds in patients] == ["PAT001"]
    in_patient = find(
        archive.port,
        RESTRICTED,
        PATIENT_ROOT_FIND,
        QueryRetrieveLevel="STUDY",
        PatientID="PAT001",
        StudyInstanceUID="",
    )
    assert study_uids(in_patient) == {studies["A"]}


def test_relational_keys_do_not_reach_into_an_invisible_study(
    archive: RunningServer, studies: dict[str, str]
) -> None:
    keys = {"QueryRetrieveLevel": "PATIENT", "PatientID": "", "StudyInstanceUID": studies["B"]}
    restricted = find(archive.port, RESTRICTED, PATIENT_ROOT_FIND, relational=True, **keys)
    unrestricted = find(archive.port, "WS", PATIENT_ROOT_FIND, relational=True, **keys)
    assert (len(restricted), len(unrestricted)) == (0, 1)


def test_unrestricted_ae_sees_every_study(archive: RunningServer, studies: dict[str, str]) -> None:
    answers = find(
        archive.port, "WS", STUDY_ROOT_FIND, QueryRetrieveLevel="STUDY", StudyInstanceUID=""
    )
    assert study_uids(answers) == {studies["A"], studies["B"]}


def move(port: int, calling_ae: str, study_uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    assoc = associate(port, [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])], calling_ae=calling_ae)
    assert assoc.is_established
    try:
        responses = [
            status for status, _ in assoc.send_c_move(identifier, "RECEIVER", STUDY_ROOT_MOVE)
        ]
    finally:
        assoc.release()
    return responses[-1]


def test_move_of_an_invisible_study_is_answered_as_a_missing_one(
    archive: RunningServer, studies: dict[str, str], receiver: Receiver
) -> None:
    invisible = move(archive.port, RESTRICTED, studies["B"])
    missing = move(archive.port, RESTRICTED, generate_uid())
    for final in (invisible, missing):
        assert final.Status == 0x0000
        assert final.NumberOfCompletedSuboperations == 0
        assert final.NumberOfFailedSuboperations == 0
    assert receiver.received == []
    visible = move(archive.port, RESTRICTED, studies["A"])
    assert visible.NumberOfCompletedSuboperations == 2
    assert len(receiver.received) == 2
    assert move(archive.port, "WS", studies["B"]).NumberOfCompletedSuboperations == 1


def get(port: int, calling_ae: str, study_uid: str) -> tuple[Dataset, list[str]]:
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context(CT, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="PACSNODE",
        ext_neg=[build_role(CT, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    try:
        responses = [status for status, _ in assoc.send_c_get(identifier, STUDY_ROOT_GET)]
    finally:
        assoc.release()
    return responses[-1], received


def test_get_of_an_invisible_study_sends_nothing(
    archive: RunningServer, studies: dict[str, str]
) -> None:
    final, received = get(archive.port, RESTRICTED, studies["B"])
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 0
    assert received == []
    final, received = get(archive.port, RESTRICTED, studies["A"])
    assert final.NumberOfCompletedSuboperations == 2
    assert len(received) == 2


@pytest.mark.parametrize(
    ("visible", "message"),
    [
        ('{ Colour = "RED" }', "Colour is not an attribute the index keeps"),
        ('{ SOPClassUID = "1.2*" }', "not matched at patient, study or series level"),
        ('"InstitutionName"', "must be a table"),
    ],
)
def test_a_keyword_the_index_cannot_match_is_a_config_error(
    tmp_path: Path, visible: str, message: str
) -> None:
    path = tmp_path / "pacsnode.toml"
    path.write_text(f'[[remote_ae]]\nae_title = "X"\nhost = "h"\nport = 1\nvisible = {visible}\n')
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={})


def test_visible_is_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "pacsnode.toml"
    path.write_text(
        '[[remote_ae]]\nae_title = "X"\nhost = "h"\nport = 1\n'
        'visible = { IssuerOfPatientID = "HOSP1", InstitutionName = "CLINIC A*" }\n'
    )
    remote = load_settings(path, environ={}).remote_ae[0]
    assert remote.visible == (("InstitutionName", "CLINIC A*"), ("IssuerOfPatientID", "HOSP1"))


def test_a_run_time_entry_keeps_the_config_files_restriction(tmp_path: Path) -> None:
    configured = RemoteAE("CLINICA", "localhost", 104, visible=(("InstitutionName", "A*"),))
    archive = Archive(Settings(data_dir=tmp_path / "data", remote_ae=(configured,)))
    try:
        edited = remote_from_json({**remote_as_json(configured), "description": "edited"})
        archive.remotes.put(edited)
        archive.remotes.put(replace(configured, visible=()))  # as `pacsnode remote add` does
        assert archive.remotes.visible_to("CLINICA") == (("InstitutionName", "A*"),)
        widened = {**remote_as_json(configured), "visible": {"InstitutionName": "*"}}
        with pytest.raises(RemoteError, match="config file only"):
            archive.remotes.put(remote_from_json(widened))
        with pytest.raises(RemoteError, match="not an attribute the index keeps"):
            remote_from_json({**widened, "visible": {"Colour": "RED"}})
    finally:
        archive.close()
