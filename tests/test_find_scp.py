"""C-FIND against a real server: pynetdicom and DCMTK findscu as the workstation."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pdu
import pydicom
import pytest
from conftest import PYDICOM_FILES, RunningServer, ServerFactory, ct_dataset, save
from peers import associate, dcmtk, send_datasets
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from pacsnode.archive.attributes import Level
from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import Received
from pacsnode.archive.matching import Query, build, search
from pacsnode.config import Settings

PATIENT_ROOT = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_STUDY_ONLY = "1.2.840.10008.5.1.4.1.2.3.1"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.22"
ELE = "1.2.840.10008.1.2.1"


@pytest.fixture
def loaded(server: RunningServer) -> dict[str, str]:
    """Two patients: DOE^JOHN with a CT+SR study (2020) and an MR study (2021); and
    Müller^Hans, whose name arrives in ISO_IR 100."""
    uids = {name: generate_uid() for name in ("ct", "mr", "muller", "ct_series", "sr_series")}
    ct_study = dict(
        study=uids["ct"],
        patient_id="PAT1",
        patient_name="DOE^JOHN",
        StudyDate="20200115",
        AccessionNumber="A100",
    )
    datasets = [
        ct_dataset(series=uids["ct_series"], InstanceNumber=1, **ct_study),
        ct_dataset(series=uids["ct_series"], InstanceNumber=2, **ct_study),
        ct_dataset(series=uids["sr_series"], modality="SR", sop_class=SR_CLASS, **ct_study),
        ct_dataset(
            study=uids["mr"],
            patient_id="PAT1",
            patient_name="DOE^JOHN",
            modality="MR",
            StudyDate="20210601",
            AccessionNumber="A200",
            StudyDescription="Brain",
        ),
    ]
    muller = ct_dataset(
        study=uids["muller"],
        patient_id="PAT2",
        patient_name="Müller^Hans",
        StudyDate="20220301",
        AccessionNumber="A300",
    )
    muller.SpecificCharacterSet = "ISO_IR 100"
    datasets.append(muller)
    classes = sorted({str(ds.SOPClassUID) for ds in datasets})
    for sop_class in classes:
        batch = [ds for ds in datasets if str(ds.SOPClassUID) == sop_class]
        assert send_datasets(server.port, batch) == [0] * len(batch)
    return uids


def find(
    port: int, model: str, level: str, charset: str | None = None, **keys: object
) -> tuple[list[Dataset], int, str]:
    """Run one C-FIND; returns the matches, the final status and its Error Comment."""
    identifier = Dataset()
    if charset:
        identifier.SpecificCharacterSet = charset
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(model, ["1.2.840.10008.1.2.1"])], calling_ae="WORKSTATION")
    assert assoc.is_established
    matches, final, comment = [], -1, ""
    for status, found in assoc.send_c_find(identifier, model):
        if status.Status in (0xFF00, 0xFF01):
            matches.append(found)
        else:
            final, comment = int(status.Status), str(status.get("ErrorComment", ""))
    assoc.release()
    return matches, final, comment


def study_uids(matches: list[Dataset]) -> set[str]:
    return {str(m.StudyInstanceUID) for m in matches}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"PatientName": "DOE*"}, {"ct", "mr"}),
        ({"PatientName": "doe^j*"}, {"ct", "mr"}),  # case-insensitive names
        ({"PatientName": "?OE^JOHN"}, {"ct", "mr"}),
        ({"PatientName": "*"}, {"ct", "mr", "muller"}),
        ({"StudyDate": "20200101-20201231"}, {"ct"}),
        ({"StudyDate": "20210101-"}, {"mr", "muller"}),
        ({"StudyDate": "-20200201"}, {"ct"}),
        ({"StudyDate": "20210601"}, {"mr"}),
        ({"AccessionNumber": "A200"}, {"mr"}),
        ({"ModalitiesInStudy": "SR"}, {"ct"}),
        ({"ModalitiesInStudy": "MR\\SR"}, {"ct", "mr"}),
        ({"StudyDescription": "brain"}, {"mr"}),
        ({"PatientID": "PAT2"}, {"muller"}),
    ],
)
def test_study_root_study_level_matching(
    server: RunningServer, loaded: dict[str, str], keys: dict[str, str], expected: set[str]
) -> None:
    matches, final, _ = find(server.port, STUDY_ROOT, "STUDY", StudyInstanceUID="", **keys)
    assert final == 0x0000
    assert study_uids(matches) == {loaded[name] for name in expected}


def test_uid_list_matching(server: RunningServer, loaded: dict[str, str]) -> None:
    wanted = f"{loaded['ct']}\\{loaded['muller']}"
    matches, _, _ = find(server.port, STUDY_ROOT, "STUDY", StudyInstanceUID=wanted)
    assert study_uids(matches) == {loaded["ct"], loaded["muller"]}


def test_returned_and_computed_attributes(server: RunningServer, loaded: dict[str, str]) -> None:
    matches, _, _ = find(
        server.port,
        STUDY_ROOT,
        "study",
        StudyInstanceUID=loaded["ct"],
        PatientName="",
        NumberOfStudyRelatedInstances="",
        NumberOfStudyRelatedSeries="",
        ModalitiesInStudy="",
        RetrieveAETitle="",
        StudyDescription="",
        ReferringPhysicianName="",
    )
    (match,) = matches
    assert match.QueryRetrieveLevel == "STUDY"
    assert str(match.PatientName) == "DOE^JOHN"
    assert int(match.NumberOfStudyRelatedInstances) == 3
    assert int(match.NumberOfStudyRelatedSeries) == 2
    assert list(match.ModalitiesInStudy) == ["CT", "SR"]
    assert match.RetrieveAETitle == "PACSNODE"
    assert "StudyDescription" in match and not match.StudyDescription  # empty, not dropped


def test_patient_root_levels_and_unique_keys(server: RunningServer, loaded: dict[str, str]) -> None:
    patients, final, _ = find(
        server.port,
        PATIENT_ROOT,
        "PATIENT",
        PatientID="PAT1",
        PatientName="",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedInstances="",
    )
    assert final == 0 and len(patients) == 1
    assert int(patients[0].NumberOfPatientRelatedStudies) == 2
    assert int(patients[0].NumberOfPatientRelatedInstances) == 4

    studies, final, _ = find(
        server.port, PATIENT_ROOT, "STUDY", PatientID="PAT1", StudyInstanceUID=""
    )
    assert final == 0 and study_uids(studies) == {loaded["ct"], loaded["mr"]}

    _, final, comment = find(server.port, PATIENT_ROOT, "STUDY", StudyInstanceUID="")
    assert final == 0xA900 and "PatientID" in comment


def test_series_and_image_levels(server: RunningServer, loaded: dict[str, str]) -> None:
    series, _, _ = find(
        server.port,
        STUDY_ROOT,
        "SERIES",
        StudyInstanceUID=loaded["ct"],
        SeriesInstanceUID="",
        Modality="",
        NumberOfSeriesRelatedInstances="",
    )
    by_modality = {s.Modality: s for s in series}
    assert set(by_modality) == {"CT", "SR"}
    assert int(by_modality["CT"].NumberOfSeriesRelatedInstances) == 2

    images, _, _ = find(
        server.port,
        STUDY_ROOT,
        "IMAGE",
        StudyInstanceUID=loaded["ct"],
        SeriesInstanceUID=loaded["ct_series"],
        SOPInstanceUID="",
        InstanceNumber="",
        SOPClassUID="",
    )
    assert sorted(int(i.InstanceNumber) for i in images) == [1, 2]

    _, final, _ = find(server.port, STUDY_ROOT, "IMAGE", StudyInstanceUID=loaded["ct"])
    assert final == 0xA900  # the series is missing above the IMAGE level


def test_patient_study_only_model(server: RunningServer, loaded: dict[str, str]) -> None:
    patients, final, _ = find(server.port, PATIENT_STUDY_ONLY, "PATIENT", PatientName="M*")
    assert final == 0 and [str(p.PatientName) for p in patients] == ["Müller^Hans"]
    _, final, _ = find(
        server.port, PATIENT_STUDY_ONLY, "SERIES", PatientID="PAT1", StudyInstanceUID=loaded["ct"]
    )
    assert final == 0xA900


def test_character_sets_in_and_out(server: RunningServer, loaded: dict[str, str]) -> None:
    matches, final, _ = find(
        server.port,
        STUDY_ROOT,
        "STUDY",
        charset="ISO_IR 100",
        PatientName="müller*",
        StudyInstanceUID="",
    )
    assert final == 0 and study_uids(matches) == {loaded["muller"]}
    assert matches[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(matches[0].PatientName) == "Müller^Hans"


def test_cancel_between_responses(server: RunningServer) -> None:
    """A C-CANCEL that is already waiting when the matches start stops them: the
    request and its cancel leave together, so the server meets the cancel between two
    answers whatever its speed."""
    from pacsnode.dimse import codec
    from pacsnode.dimse.query_scu import cancel
    from pacsnode.dimse.scu import Peer, connect
    from pacsnode.net import commands
    from pacsnode.net.requestor import Proposal

    study, series = generate_uid(), generate_uid()
    many = [ct_dataset(study=study, series=series, InstanceNumber=n, rows=2) for n in range(200)]
    assert send_datasets(server.port, many) == [0] * 200
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = study
    identifier.SeriesInstanceUID = series
    identifier.SOPInstanceUID = ""
    syntax = "1.2.840.10008.1.2.1"
    association = connect(
        Peer("127.0.0.1", server.port, "PACSNODE", "CANCELLER"), [Proposal(STUDY_ROOT, [syntax])]
    )
    try:
        message_id = association.next_message_id()
        command = {
            "CommandField": commands.C_FIND_RQ,
            "AffectedSOPClassUID": STUDY_ROOT,
            "Priority": 0,
            "MessageID": message_id,
        }
        [context] = association.contexts.values()
        association.send(context.id, command, codec.encode(identifier, syntax))
        cancel(association, STUDY_ROOT)
        statuses = [int(r.command["Status"]) for r in _until_final(association, message_id)]
    finally:
        association.release()
    assert statuses[-1] == 0xFE00
    assert set(statuses[:-1]) <= {0xFF00} and len(statuses) - 1 < 200


def _until_final(association: Any, message_id: int) -> Iterator[Any]:
    for response in association.responses(message_id):
        yield response
        if int(response.command["Status"]) not in (0xFF00, 0xFF01):
            return


def test_dcmtk_findscu(server: RunningServer, loaded: dict[str, str]) -> None:
    result = dcmtk(
        "findscu",
        "-v",
        "-S",
        "-aec",
        "PACSNODE",
        "127.0.0.1",
        str(server.port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientName=DOE*",
        "-k",
        "StudyInstanceUID",
        "-k",
        "StudyDate",
    )
    assert result.returncode == 0, result.stderr
    output = result.stderr + result.stdout
    assert output.count("(Pending)") == 2
    assert "Received Final Find Response (Success)" in output
    assert loaded["ct"] in output and loaded["mr"] in output
    assert loaded["muller"] not in output


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"PatientName": "doe*"}, 2),
        ({"PatientName": "DOE^JOHN"}, 2),
        ({"PatientName": "Doe^John"}, 2),
        ({"StudyDate": "20200101-20201231"}, 1),
        ({"ModalitiesInStudy": "sr"}, 1),
        ({"AccessionNumber": "A1%"}, 0),  # a literal %, not a wildcard
        ({"AccessionNumber": "A_00"}, 0),  # a literal _, not a wildcard
        ({"AccessionNumber": "A?00"}, 2),
    ],
)
def test_core_matching_is_the_same_on_sqlite_and_postgresql(
    database_url: str, tmp_path: Path, keys: dict[str, str], expected: int
) -> None:
    archive = Archive(Settings(data_dir=tmp_path / "data", database_url=database_url))
    study_a, study_b = generate_uid(), generate_uid()
    for ds in (
        ct_dataset(
            study=study_a, patient_name="DOE^JOHN", AccessionNumber="A100", StudyDate="20200115"
        ),
        ct_dataset(
            study=study_a,
            patient_name="DOE^JOHN",
            modality="SR",
            sop_class=SR_CLASS,
            AccessionNumber="A100",
            StudyDate="20200115",
        ),
        ct_dataset(
            study=study_b, patient_name="DOE^JOHN", AccessionNumber="A200", StudyDate="20210601"
        ),
    ):
        path = save(ds, tmp_path / f"{ds.SOPInstanceUID}.dcm")
        assert archive.ingest(Received(path)).ok
    query = Query(level=Level.STUDY, keys=keys, patient_root=False)
    with archive.database.reader.connect() as connection:
        found = list(search(connection, build(query)))
    archive.close()
    assert len(found) == expected


def test_relational_query_when_negotiated(server: RunningServer, loaded: dict[str, str]) -> None:
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = PATIENT_ROOT
    item.service_class_application_information = b"\x01\x01\x01\x01"  # all four asked
    ae = AE(ae_title="RELATIONAL")
    ae.add_requested_context(PATIENT_ROOT)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="PACSNODE", ext_neg=[item])
    granted = assoc.acceptor.sop_class_extended
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    identifier.PatientName = "DOE*"
    responses = list(assoc.send_c_find(identifier, PATIENT_ROOT))
    assoc.release()
    # Relational and combined date-time granted; fuzzy and timezone matching refused.
    assert granted[PATIENT_ROOT] == b"\x01\x01\x00\x00"
    assert responses[-1][0].Status == 0x0000  # no PatientID needed above STUDY
    assert study_uids([found for status, found in responses[:-1]]) == {loaded["ct"], loaded["mr"]}


def test_configured_response_character_set(server_factory: ServerFactory) -> None:
    server = server_factory(response_character_set="ISO_IR 100")
    japanese = pydicom.dcmread(PYDICOM_FILES / "charset_files" / "chrH31.dcm")
    german = ct_dataset(patient_name="Müller^Hans", patient_id="DE1")
    german.SpecificCharacterSet = "ISO_IR 100"
    assert send_datasets(server.port, [german]) == [0]
    assert send_datasets(
        server.port, [japanese], syntaxes=[str(japanese.file_meta.TransferSyntaxUID)]
    ) == [0]
    answers = {}
    for patient_id in ("DE1", str(japanese.PatientID)):
        (match,), final, _ = find(
            server.port,
            STUDY_ROOT,
            "STUDY",
            PatientID=patient_id,
            PatientName="",
            StudyInstanceUID="",
        )
        assert final == 0 and match.SpecificCharacterSet == "ISO_IR 100"
        answers[patient_id] = str(match.PatientName)
    assert answers["DE1"] == "Müller^Hans"
    # Ideographic and phonetic groups cannot be written in Latin-1: '?' stands in.
    alphabetic, ideographic = answers[str(japanese.PatientID)].split("=")[:2]
    assert alphabetic == str(japanese.PatientName).split("=")[0]
    assert set(ideographic) <= set("?^")
    assert "replacement characters" in server.log()


CHARSET_FILES = {
    "chrRuss.dcm": "ISO_IR 144",
    "chrHbrw.dcm": "ISO_IR 138",
    "chrGreek.dcm": "ISO_IR 126",
    "chrArab.dcm": "ISO_IR 127",
    "chrGerm.dcm": "ISO_IR 100",
    "chrH31.dcm": "ISO 2022 IR 87",
    "chrX1.dcm": "ISO_IR 192",
}


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_names_match_in_their_own_character_set(server: RunningServer, name: str) -> None:
    source = pydicom.dcmread(PYDICOM_FILES / "charset_files" / name)
    assert send_datasets(
        server.port, [source], syntaxes=[str(source.file_meta.TransferSyntaxUID)]
    ) == [0]
    full_name = str(source.PatientName)
    charset = source.SpecificCharacterSet
    prefix = full_name.split("=")[0][:3]  # the first letters, in the file's own script
    matches, final, _ = find(
        server.port,
        STUDY_ROOT,
        "STUDY",
        charset=charset,
        PatientName=f"{prefix}*",
        StudyInstanceUID="",
    )
    assert final == 0
    assert [str(m.PatientName) for m in matches] == [full_name]
    assert CHARSET_FILES[name] in (charset if isinstance(charset, str) else list(charset))


def test_the_association_log_line_counts_its_c_finds(
    server: RunningServer, loaded: dict[str, str]
) -> None:
    """A workstation's queries are counted in its association's one log line, not
    logged one line each."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "DOE*"
    assoc = associate(server.port, [(STUDY_ROOT, ["1.2.840.10008.1.2.1"])], calling_ae="COUNTED")
    for _ in range(3):
        statuses = [int(status.Status) for status, _ in assoc.send_c_find(identifier, STUDY_ROOT)]
        assert statuses == [0xFF00, 0xFF00, 0x0000]
    assoc.release()
    server.wait_for_log("COUNTED@127.0.0.1")
    lines = [line for line in server.log().splitlines() if "COUNTED" in line]
    assert len(lines) == 1
    assert "released" in lines[0] and lines[0].endswith(": 3 C-FIND")


def _pdvs(data: bytes) -> list[tuple[int, bytes]]:
    """The (control header, fragment) of every PDV in a run of P-DATA-TF PDUs."""
    found = []
    while data:
        kind, _, length = struct.unpack(">BBI", data[:6])
        assert kind == pdu.P_DATA_TF
        body, data = data[6 : 6 + length], data[6 + length :]
        while body:
            (size,) = struct.unpack(">I", body[:4])
            found.append((body[5], body[6 : 4 + size]))
            body = body[4 + size :]
    return found


def _status(command: bytes) -> int:
    """The Status (0000,0900) of an Implicit VR Little Endian command set."""
    while command:
        group, element, length = struct.unpack("<HHI", command[:8])
        if (group, element) == (0x0000, 0x0900):
            return int(struct.unpack("<H", command[8:10])[0])
        command = command[8 + length :]
    raise AssertionError("no Status")


def test_a_single_match_and_the_final_response_leave_in_one_write(
    server: RunningServer, loaded: dict[str, str]
) -> None:
    """The pending answer is held until the final response and both go out together:
    the workstation's first read brings the whole result."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with sock:
        sock.sendall(pdu.associate_request("RAW", "PACSNODE", [(1, STUDY_ROOT, [ELE])]))
        reply = pdu.read_pdu(sock)
        assert reply is not None and reply[0] == pdu.ASSOCIATE_AC
        command = b"".join(
            struct.pack("<HHI", 0x0000, element, len(value)) + value
            for element, value in (
                (0x0002, STUDY_ROOT.encode() + b"\0"),
                (0x0100, struct.pack("<H", 0x0020)),
                (0x0110, struct.pack("<H", 7)),
                (0x0700, struct.pack("<H", 0)),
                (0x0800, struct.pack("<H", 0x0000)),
            )
        )
        command = struct.pack("<HHII", 0x0000, 0x0000, 4, len(command)) + command
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.AccessionNumber = "A200"
        identifier.StudyInstanceUID = ""
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, False
        write_dataset(out, identifier)
        for control, fragment in ((0x03, command), (0x02, out.getvalue())):
            pdv = struct.pack(">IBB", len(fragment) + 2, 1, control) + fragment
            sock.sendall(struct.pack(">BBI", pdu.P_DATA_TF, 0, len(pdv)) + pdv)
        first_read = sock.recv(65536)
    pdvs = _pdvs(first_read)
    commands = [fragment for control, fragment in pdvs if control & 0x01]
    assert [_status(c) for c in commands] == [0xFF00, 0x0000]
    assert len(pdvs) == 3  # pending command, its identifier, final command
