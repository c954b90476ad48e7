"""Prefetch: scheduling a worklist item or starting a procedure step pulls the patient's
prior studies from a remote archive (here another pacsnode, a real Q/R SCP)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port
from peers import send_datasets
from pydicom.uid import generate_uid
from test_mpps import Modality, in_progress
from test_worklist import item

from pacsnode.archive.retrieve import locate


@pytest.fixture
def pair(server_factory: ServerFactory) -> Iterator[tuple[RunningServer, RunningServer]]:
    """A reading archive that prefetches from PRIORS, and PRIORS holding old studies."""
    reading_port = free_port()
    priors = server_factory(
        ae_title="PRIORS",
        remotes=[{"ae_title": "READING", "host": "127.0.0.1", "port": reading_port}],
    )
    reading = server_factory(
        ae_title="READING",
        dicom_port=reading_port,
        prefetch_from=["PRIORS"],
        prefetch_max_studies=2,
        job_retry_delay=0.5,
        remotes=[{"ae_title": "PRIORS", "host": "127.0.0.1", "port": priors.port}],
    )
    yield reading, priors


def held(server: RunningServer, study_uid: str) -> int:
    archive = server.archive()
    try:
        return len(locate(archive, study_uid))
    finally:
        archive.close()


def wait_until_held(server: RunningServer, study_uids: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(held(server, uid) for uid in study_uids):
        assert time.monotonic() < deadline, f"priors not fetched:\n{server.log()[-3000:]}"
        time.sleep(0.3)


def studies(patient_id: str, dates: list[str]) -> list:
    return [ct_dataset(patient_id=patient_id, StudyDate=date) for date in dates]


def test_a_scheduled_item_fetches_the_newest_priors(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    reading, priors = pair
    old = studies("P1", ["20200101", "20220101", "20240101"])
    other = studies("P9", ["20240101"])
    assert send_datasets(priors.port, old + other) == [0] * 4

    body = item("P1", "Müller^Anna", "A1", "CT", "CT01", "20261124", "080000")
    assert httpx.post(f"{reading.url}/api/worklist", json=body).status_code == 201

    newest = [str(ds.StudyInstanceUID) for ds in old[1:]]
    wait_until_held(reading, newest)
    reading.wait_for_log("prefetching study")
    time.sleep(1)  # a wrong third retrieve would have been queued with the others
    assert held(reading, str(old[0].StudyInstanceUID)) == 0  # only the newest two
    assert held(reading, str(other[0].StudyInstanceUID)) == 0  # another patient


def test_a_step_in_progress_fetches_priors(pair: tuple[RunningServer, RunningServer]) -> None:
    reading, priors = pair
    [prior] = studies("MPPS1", ["20230505"])
    assert send_datasets(priors.port, [prior]) == [0]

    modality = Modality(reading.port)
    try:
        status = modality.create(in_progress(), generate_uid())
        assert status.Status == 0
    finally:
        modality.close()
    wait_until_held(reading, [str(prior.StudyInstanceUID)])


def test_a_source_that_is_down_is_retried(server_factory: ServerFactory) -> None:
    priors_port, reading_port = free_port(), free_port()
    priors = server_factory(
        ae_title="PRIORS",
        dicom_port=priors_port,
        remotes=[{"ae_title": "READING", "host": "127.0.0.1", "port": reading_port}],
    )
    [prior] = studies("P5", ["20250101"])
    assert send_datasets(priors.port, [prior]) == [0]
    assert priors.stop() == 0  # the source holds the prior, but is down
    reading = server_factory(
        ae_title="READING",
        dicom_port=reading_port,
        prefetch_from=["PRIORS"],
        job_retry_delay=0.5,
        remotes=[{"ae_title": "PRIORS", "host": "127.0.0.1", "port": priors_port}],
    )
    body = item("P5", "DOE^JOHN", "A5", "CT", "CT01", "20261124", "080000")
    assert httpx.post(f"{reading.url}/api/worklist", json=body).status_code == 201
    reading.wait_for_log("no prefetch source could be asked")
    priors.start()
    wait_until_held(reading, [str(prior.StudyInstanceUID)])
