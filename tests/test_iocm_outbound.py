"""IOCM outbound: a pacsnode that deletes (or receives a rejection note) tells its IOCM
destination, a second real pacsnode, with a KOS rejection note through the job queue,
then asks on the same association for storage commitment of the note. The destination
hides the instances (its C-FIND no longer finds them) and commits the note."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ct_dataset, free_port, start_server
from peers import send_datasets
from pydicom.uid import generate_uid
from test_iocm import find, note

from pacsnode.archive.rejection import KEY_OBJECT_SELECTION


class Pair:
    def __init__(self, archive: RunningServer, destination: RunningServer) -> None:
        self.archive = archive
        self.destination = destination

    def jobs(self, kind: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.archive.url}/api/jobs", params={"limit": 500}, timeout=30)
        return [job for job in answer.json() if job["kind"] == kind]

    def wait_done(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The IOCM jobs once ``count`` of them are done (failing on a failed one)."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs("iocm-rejection")
            assert not [job for job in jobs if job["status"] == "failed"], jobs
            done = [job for job in jobs if job["status"] == "done"]
            if len(done) >= count:
                return done
            assert time.monotonic() < deadline, f"IOCM jobs: {jobs}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    destination_port, archive_port = free_port(), free_port()
    destination = start_server(
        tmp_path_factory.mktemp("destination"),
        [{"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": archive_port}],
        ae_title="DEST",
        dicom_port=destination_port,
    )
    archive = start_server(
        tmp_path_factory.mktemp("archive"),
        [
            {"ae_title": "DEST", "host": "127.0.0.1", "port": destination_port},
            {"ae_title": "MODALITY", "host": "127.0.0.1", "port": 104},
        ],
        ae_title="ARCHIVE",
        dicom_port=archive_port,
        iocm_destinations=["DEST"],
    )
    yield Pair(archive, destination)
    archive.kill()
    destination.kill()


def both_hold(pair: Pair, study: str, count: int) -> list[Any]:
    series = generate_uid()
    images = [
        ct_dataset(study=study, series=series, patient_id="IOCM1", InstanceNumber=n)
        for n in range(count)
    ]
    for server in (pair.archive, pair.destination):
        assert send_datasets(server.port, images) == [0] * count
    assert len(find(pair.destination.port, "STUDY", StudyInstanceUID=study)) == 1
    return images


def test_a_deletion_reaches_the_destination_as_a_committed_rejection_note(pair: Pair) -> None:
    study = generate_uid()
    both_hold(pair, study, 2)

    deleted = httpx.delete(f"{pair.archive.url}/api/studies/{study}", timeout=30)

    assert deleted.status_code == 200
    [job] = pair.wait_done(1)
    assert job["result"]["committed"] is True and job["result"]["destination"] == "DEST"
    note_uid = job["result"]["note"]
    assert job["payload"]["withdrawal"]["code"] == "113039"
    assert find(pair.destination.port, "STUDY", StudyInstanceUID=study) == []
    pair.destination.wait_for_log("storage commitment")
    destination = pair.destination.archive()
    try:
        stored = destination.index.find_instance(note_uid)
        assert stored is not None and stored.sop_class_uid == KEY_OBJECT_SELECTION
        assert stored.rejection == "113039"  # the note hides itself too
        assert len(destination.rejections.listed("113039")) == 2
    finally:
        destination.close()
    pair.archive.wait_for_log(f"rejection note {note_uid} stored and committed by DEST")
    # a second deletion of what is already hidden sends nothing new
    again = httpx.delete(f"{pair.archive.url}/api/studies/{study}", params={"hard": 1}, timeout=30)
    assert again.status_code == 200
    assert len(pair.jobs("iocm-rejection")) == 1


def test_the_chosen_reason_titles_the_note(pair: Pair) -> None:
    study = generate_uid()
    images = both_hold(pair, study, 1)
    before = len(pair.jobs("iocm-rejection"))

    deleted = httpx.delete(
        f"{pair.archive.url}/api/instances/{images[0].SOPInstanceUID}",
        params={"reason": "113001"},
        timeout=30,
    )

    assert deleted.status_code == 200
    done = pair.wait_done(before + 1)
    assert done[0]["payload"]["withdrawal"]["code"] == "113001"
    assert find(pair.destination.port, "STUDY", StudyInstanceUID=study) == []
    # rejected for quality at the destination: a copy sent again is refused there (B006)
    assert send_datasets(pair.destination.port, images) == [0xB006]


def test_a_rejection_note_received_is_forwarded(pair: Pair) -> None:
    study = generate_uid()
    images = both_hold(pair, study, 2)
    before = len(pair.jobs("iocm-rejection"))
    rejecting = note("113037", study, images[:1])

    assert send_datasets(pair.archive.port, [rejecting]) == [0]

    done = pair.wait_done(before + 1)
    assert done[0]["payload"] == {"destination": "DEST", "forward": rejecting.SOPInstanceUID}
    series = str(images[0].SeriesInstanceUID)
    found = find(
        pair.destination.port,
        "IMAGE",
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        SOPInstanceUID="",
    )
    assert [ds.SOPInstanceUID for ds in found] == [images[1].SOPInstanceUID]
