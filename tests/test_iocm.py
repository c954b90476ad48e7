"""IOCM rejection notes: what they hide from C-FIND, C-MOVE and C-GET, what is refused
when sent again, and restoring and purging through the REST API and the CLI."""

from __future__ import annotations

import httpx
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, stored_path
from peers import associate, pacsnode_cli, send_datasets
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE, build_role, evt

KOS = "1.2.840.10008.5.1.4.1.1.88.59"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"


def note(code: str, study: str, references: list[Dataset], series: str | None = None) -> Dataset:
    """A Key Object Selection titled with a DCM rejection code, rejecting ``references``."""
    ds = Dataset()
    ds.SOPClassUID = KOS
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PAT001"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or generate_uid()
    ds.Modality = "KO"
    ds.InstanceNumber = 1
    title = Dataset()
    title.CodeValue = code
    title.CodingSchemeDesignator = "DCM"
    title.CodeMeaning = "Rejected for Quality Reasons"
    ds.ConceptNameCodeSequence = [title]
    by_series: dict[str, list[Dataset]] = {}
    for referenced in references:
        item = Dataset()
        item.ReferencedSOPClassUID = referenced.SOPClassUID
        item.ReferencedSOPInstanceUID = referenced.SOPInstanceUID
        by_series.setdefault(str(referenced.SeriesInstanceUID), []).append(item)
    evidence = Dataset()
    evidence.StudyInstanceUID = study
    evidence.ReferencedSeriesSequence = []
    for series_uid, items in by_series.items():
        entry = Dataset()
        entry.SeriesInstanceUID = series_uid
        entry.ReferencedSOPSequence = items
        evidence.ReferencedSeriesSequence.append(entry)
    ds.CurrentRequestedProcedureEvidenceSequence = [evidence] if references else []
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def store(port: int, datasets: list[Dataset]) -> list[tuple[int, str]]:
    classes = sorted({str(ds.SOPClassUID) for ds in datasets})
    assoc = associate(port, [(c, [ExplicitVRLittleEndian]) for c in classes])
    answers = []
    for ds in datasets:
        status = assoc.send_c_store(ds)
        answers.append((int(status.Status), str(status.get("ErrorComment", ""))))
    assoc.release()
    return answers


def find(port: int, level: str, **keys: str) -> list[Dataset]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in {"StudyInstanceUID": "", **keys}.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])])
    found = [ds for status, ds in assoc.send_c_find(identifier, STUDY_ROOT_FIND) if ds]
    assoc.release()
    return found


class Study:
    def __init__(self, server: RunningServer) -> None:
        self.uid, self.ct_series, self.mr_series = generate_uid(), generate_uid(), generate_uid()
        self.cts = [
            ct_dataset(study=self.uid, series=self.ct_series, InstanceNumber=n) for n in (1, 2, 3)
        ]
        self.mr = ct_dataset(
            study=self.uid, series=self.mr_series, modality="MR", sop_class=MRImageStorage
        )
        assert send_datasets(server.port, self.cts) == [0, 0, 0]
        assert send_datasets(server.port, [self.mr]) == [0]


def images(server: RunningServer, study: Study) -> set[str]:
    """What an IMAGE-level C-FIND finds in the study's CT and MR series."""
    found = [
        ds
        for series in (study.ct_series, study.mr_series)
        for ds in find(
            server.port,
            "IMAGE",
            StudyInstanceUID=study.uid,
            SeriesInstanceUID=series,
            SOPInstanceUID="",
        )
    ]
    return {str(ds.SOPInstanceUID) for ds in found}


def retrieved_by_c_get(server: RunningServer, study_uid: str) -> set[str]:
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(STUDY_ROOT_GET)
    roles = []
    for sop_class in (CTImageStorage, MRImageStorage, KOS):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian])
        roles.append(build_role(sop_class, scp_role=True))
    assoc = ae.associate(
        "127.0.0.1",
        server.port,
        ae_title="PACSNODE",
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    final = [status for status, _ in assoc.send_c_get(identifier, STUDY_ROOT_GET)][-1]
    assoc.release()
    assert final.Status == 0x0000
    return set(received)


def test_a_note_hides_what_it_references(server: RunningServer) -> None:
    study = Study(server)
    wrong_class = Dataset()
    wrong_class.SOPClassUID = CTImageStorage  # the MR named as a CT: left alone
    wrong_class.SOPInstanceUID = study.mr.SOPInstanceUID
    wrong_class.SeriesInstanceUID = study.mr_series
    rejection = note("113001", study.uid, [*study.cts[:2], wrong_class])
    assert store(server.port, [rejection]) == [(0, "")]
    assert images(server, study) == {study.cts[2].SOPInstanceUID, study.mr.SOPInstanceUID}
    [found] = find(
        server.port,
        "STUDY",
        StudyInstanceUID=study.uid,
        NumberOfStudyRelatedInstances="",
        NumberOfStudyRelatedSeries="",
        ModalitiesInStudy="",
    )
    assert (found.NumberOfStudyRelatedInstances, found.NumberOfStudyRelatedSeries) == (2, 2)
    assert list(found.ModalitiesInStudy) == ["CT", "MR"]  # the note's KO series is hidden
    named = f"names {study.mr.SOPInstanceUID} as CT Image Storage, stored as MR Image Storage"
    assert f"{named}: left alone" in server.log()  # SOP classes by name, not UID
    assert retrieved_by_c_get(server, study.uid) == images(server, study)
    listed = httpx.get(f"{server.url}/api/rejected").json()
    assert {(r["sop_instance_uid"], r["code"]) for r in listed} == {
        (str(study.cts[0].SOPInstanceUID), "113001"),
        (str(study.cts[1].SOPInstanceUID), "113001"),
    }


def test_rejecting_a_whole_series_and_study_hides_them(server: RunningServer) -> None:
    study = Study(server)
    assert store(server.port, [note("113037", study.uid, study.cts)]) == [(0, "")]
    series = find(server.port, "SERIES", StudyInstanceUID=study.uid, SeriesInstanceUID="")
    assert {str(ds.SeriesInstanceUID) for ds in series} == {study.mr_series}
    assert store(server.port, [note("113037", study.uid, [study.mr])]) == [(0, "")]
    assert find(server.port, "STUDY", StudyInstanceUID=study.uid) == []


@pytest.mark.parametrize(("answer", "status"), [("warning", 0xB006), ("failure", 0xC000)])
def test_a_rejected_instance_sent_again_is_not_stored(
    server_factory: ServerFactory, answer: str, status: int
) -> None:
    server = server_factory(rejected_store_answer=answer)
    study = Study(server)
    path = stored_path(server, str(study.cts[0].SOPInstanceUID))
    before = path.read_bytes()
    assert store(server.port, [note("113001", study.uid, study.cts[:1])]) == [(0, "")]
    again = ct_dataset(
        study=study.uid, series=study.ct_series, instance=study.cts[0].SOPInstanceUID
    )
    again.PatientName = "CHANGED^NAME"
    [(code, comment)] = store(server.port, [again])
    assert code == status
    assert "113001" in comment
    assert path.read_bytes() == before
    assert str(study.cts[0].SOPInstanceUID) not in images(server, study)


def test_a_rejection_that_arrives_first_refuses_the_instance(server: RunningServer) -> None:
    study_uid = generate_uid()
    later = ct_dataset(study=study_uid)
    assert store(server.port, [note("113038", study_uid, [later])]) == [(0, "")]
    assert store(server.port, [later])[0][0] == 0xB006
    assert find(server.port, "STUDY", StudyInstanceUID=study_uid) == []


def test_an_invalid_note_is_refused(server: RunningServer) -> None:
    empty = note("113001", generate_uid(), [])
    [(status, comment)] = store(server.port, [empty])
    assert status == 0xC000 and "rejection note" in comment


def test_an_ordinary_key_object_selection_hides_nothing(server: RunningServer) -> None:
    study = Study(server)
    selection = note("113000", study.uid, study.cts)  # "Of Interest"
    assert store(server.port, [selection]) == [(0, "")]
    assert len(images(server, study)) == 4


def test_restore_through_the_cli(server: RunningServer) -> None:
    study = Study(server)
    first = str(study.cts[0].SOPInstanceUID)
    assert store(server.port, [note("113001", study.uid, study.cts[:1])]) == [(0, "")]
    config = str(server.config_path)
    assert first in pacsnode_cli("rejected", "list", "-c", config).stdout
    assert pacsnode_cli("rejected", "restore", first, "-c", config).returncode == 0
    assert first in images(server, study)
    assert store(server.port, [study.cts[0]]) == [(0, "")]  # may be sent again
    assert pacsnode_cli("rejected", "restore", generate_uid(), "-c", config).returncode == 1


def test_retention_expired_instances_are_purged_through_the_api(server: RunningServer) -> None:
    study = Study(server)
    expired = note("113039", study.uid, study.cts)
    assert store(server.port, [expired]) == [(0, "")]
    paths = [stored_path(server, str(ds.SOPInstanceUID)) for ds in study.cts]
    assert all(path.exists() for path in paths)
    assert httpx.post(f"{server.url}/api/rejected/purge").json() == {"purged": 4}  # and note
    assert not any(path.exists() for path in paths)
    assert images(server, study) == {str(study.mr.SOPInstanceUID)}
    assert store(server.port, [study.cts[0]]) == [(0, "")]  # expired, not wrong: accepted
    assert str(study.cts[0].SOPInstanceUID) in images(server, study)
    restore = httpx.post(f"{server.url}/api/rejected/{generate_uid()}/restore")
    assert restore.status_code == 404
