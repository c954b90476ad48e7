"""MPPS SCP with forwarding, and Instance Availability Notification, over loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port
from peers import send_datasets
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

MPPS = "1.2.840.10008.3.1.2.3.3"
IAN = "1.2.840.10008.5.1.4.33"


class Peer:
    """A pynetdicom SCP that records the N-CREATE and N-SET requests it is sent."""

    def __init__(self, sop_class: str, ae_title: str = "RIS") -> None:
        self.port = free_port()
        self.calls: list[tuple[str, str, Dataset, str]] = []
        self.changed = threading.Condition()
        self.ae = AE(ae_title=ae_title)
        self.ae.add_supported_context(sop_class)
        self.server: object | None = None

    def start(self) -> Peer:
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_N_CREATE, lambda e: self._record("create", e, e.attribute_list)),
                (evt.EVT_N_SET, lambda e: self._record("set", e, e.modification_list)),
            ],
        )
        return self

    def _record(self, operation: str, event: evt.Event, dataset: Dataset) -> tuple[int, Dataset]:
        request = event.request
        uid = getattr(request, "AffectedSOPInstanceUID", None) or request.RequestedSOPInstanceUID
        with self.changed:
            self.calls.append((operation, str(uid), dataset, event.assoc.requestor.ae_title))
            self.changed.notify_all()
        return 0x0000, Dataset()

    def wait_for(self, count: int, timeout: float = 15) -> list[tuple[str, str, Dataset, str]]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
def ris() -> Iterator[Peer]:
    peer = Peer(MPPS).start()
    yield peer
    peer.stop()


def in_progress(study_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "MPPS1"
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedProcedureStepStartDate = "20261124"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    step = Dataset()
    step.StudyInstanceUID = study_uid or generate_uid()
    step.AccessionNumber = "ACC-MPPS"
    step.ScheduledProcedureStepID = "SPS1"
    ds.ScheduledStepAttributesSequence = [step]
    return ds


def finished(status: str = "COMPLETED") -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261124"
    ds.PerformedProcedureStepEndTime = "103000"
    return ds


class Modality:
    """The modality's MPPS SCU on one association."""

    def __init__(self, port: int, calling_ae: str = "CT01") -> None:
        ae = AE(ae_title=calling_ae)
        ae.add_requested_context(MPPS)
        self.assoc = ae.associate("127.0.0.1", port, ae_title="PACSNODE")
        assert self.assoc.is_established

    def create(self, dataset: Dataset, uid: str | None) -> Dataset:
        status, _ = self.assoc.send_n_create(dataset, MPPS, uid)
        return status

    def set(self, dataset: Dataset, uid: str) -> Dataset:
        status, _ = self.assoc.send_n_set(dataset, MPPS, uid)
        return status

    def close(self) -> None:
        self.assoc.release()


def test_n_create_and_n_set_with_the_standard_statuses(server: RunningServer) -> None:
    modality = Modality(server.port)
    uid = generate_uid()
    assert modality.create(in_progress(), uid).Status == 0x0000
    assert modality.create(in_progress(), uid).Status == 0x0111
    wrong = in_progress()
    wrong.PerformedProcedureStepStatus = "COMPLETED"
    assert modality.create(wrong, generate_uid()).Status == 0x0106
    missing = in_progress()
    del missing.ScheduledStepAttributesSequence
    assert modality.create(missing, generate_uid()).Status == 0x0120
    assert modality.set(finished("DONE"), uid).Status == 0x0106
    assert modality.set(finished(), generate_uid()).Status == 0x0112
    assert modality.set(finished(), uid).Status == 0x0000
    again = modality.set(finished("DISCONTINUED"), uid)
    assert again.Status == 0x0110
    assert "COMPLETED" in again.ErrorComment
    modality.close()
    steps = httpx.get(f"{server.url}/api/mpps").json()
    assert [(s["sop_instance_uid"], s["status"]) for s in steps] == [(uid, "COMPLETED")]
    one = httpx.get(f"{server.url}/api/mpps/{uid}").json()
    assert one["dataset"]["00400253"]["Value"] == ["PPS1"]  # Performed Procedure Step ID
    assert one["dataset"]["00400251"]["Value"] == ["103000"]  # the N-SET's end time
    assert httpx.get(f"{server.url}/api/mpps/{generate_uid()}").status_code == 404


def test_the_scp_makes_the_uid_when_the_modality_does_not(server: RunningServer) -> None:
    modality = Modality(server.port)
    ae = modality.assoc
    status, _ = ae.send_n_create(in_progress(), MPPS, None)
    modality.close()
    assert status.Status == 0x0000
    assert len(httpx.get(f"{server.url}/api/mpps").json()) == 1


def forwarding(ris: Peer, **server: object) -> dict[str, object]:
    return {
        "remotes": [{"ae_title": "RIS", "host": "127.0.0.1", "port": ris.port}],
        "mpps_destinations": "RIS",
        **server,
    }


@pytest.mark.parametrize(("keep", "expected_ae"), [(False, "PACSNODE"), (True, "CT01")])
def test_steps_are_forwarded_in_order(
    server_factory: ServerFactory, ris: Peer, keep: bool, expected_ae: str
) -> None:
    server = server_factory(**forwarding(ris, mpps_keep_calling_ae=keep))
    modality = Modality(server.port)
    uid = generate_uid()
    assert modality.create(in_progress(), uid).Status == 0x0000
    assert modality.set(finished(), uid).Status == 0x0000
    modality.close()
    calls = ris.wait_for(2)
    assert [(op, sop_uid, ae) for op, sop_uid, _ds, ae in calls] == [
        ("create", uid, expected_ae),
        ("set", uid, expected_ae),
    ]
    assert calls[0][2].PerformedProcedureStepID == "PPS1"
    assert calls[1][2].PerformedProcedureStepStatus == "COMPLETED"


def test_a_forward_waits_for_its_destination_across_a_restart(
    server_factory: ServerFactory,
) -> None:
    ris = Peer(MPPS)
    server = server_factory(**forwarding(ris, job_retry_delay=60))
    modality = Modality(server.port)
    uid = generate_uid()
    assert modality.create(in_progress(), uid).Status == 0x0000
    assert modality.set(finished(), uid).Status == 0x0000
    modality.close()
    server.wait_for_log("will retry")
    server.stop()
    ris.start()
    try:
        restarted = server_factory(
            **forwarding(ris, job_retry_delay=60),
            data_dir=server.data_dir,
            start=False,
        )
        restarted.start()
        for job in httpx.get(f"{restarted.url}/api/jobs", params={"status": "pending"}).json():
            httpx.post(f"{restarted.url}/api/jobs/{job['id']}/retry")
        calls = ris.wait_for(2)
        assert [(op, sop_uid) for op, sop_uid, _ds, _ae in calls] == [
            ("create", uid),
            ("set", uid),
        ]
    finally:
        ris.stop()


def subscriber_config(subscriber: Peer, **server: object) -> dict[str, object]:
    return {
        "remotes": [{"ae_title": "VIEWER", "host": "127.0.0.1", "port": subscriber.port}],
        "ian_subscribers": "VIEWER",
        **server,
    }


def test_a_completed_step_notifies_availability(server_factory: ServerFactory) -> None:
    subscriber = Peer(IAN, "VIEWER").start()
    try:
        server = server_factory(**subscriber_config(subscriber))
        study, series = generate_uid(), generate_uid()
        images = [ct_dataset(study=study, series=series, InstanceNumber=n) for n in (1, 2)]
        assert send_datasets(server.port, images) == [0, 0]
        modality = Modality(server.port)
        uid = generate_uid()
        assert modality.create(in_progress(study), uid).Status == 0x0000
        assert subscriber.wait_for(1, timeout=1) == []  # IN PROGRESS tells nobody
        assert modality.set(finished(), uid).Status == 0x0000
        modality.close()
        [(operation, _uid, ian, calling_ae)] = subscriber.wait_for(1)
    finally:
        subscriber.stop()
    assert (operation, calling_ae) == ("create", "PACSNODE")
    assert ian.StudyInstanceUID == study
    assert ian.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID == uid
    [referenced_series] = ian.ReferencedSeriesSequence
    assert referenced_series.SeriesInstanceUID == series
    items = referenced_series.ReferencedSOPSequence
    assert {i.ReferencedSOPInstanceUID for i in items} == {i.SOPInstanceUID for i in images}
    assert {(i.InstanceAvailability, i.RetrieveAETitle) for i in items} == {("ONLINE", "PACSNODE")}


def test_a_quiet_study_notifies_availability(server_factory: ServerFactory) -> None:
    subscriber = Peer(IAN, "VIEWER").start()
    try:
        server = server_factory(**subscriber_config(subscriber, ian_study_stable_seconds=1))
        image = ct_dataset()
        assert send_datasets(server.port, [image]) == [0]
        [(_op, _uid, ian, _ae)] = subscriber.wait_for(1)
        assert ian.StudyInstanceUID == image.StudyInstanceUID
        assert ian.ReferencedPerformedProcedureStepSequence == []
        time.sleep(2.5)
        assert len(subscriber.calls) == 1  # once, until the study changes
        more = ct_dataset(study=image.StudyInstanceUID, series=image.SeriesInstanceUID)
        assert send_datasets(server.port, [more]) == [0]
        calls = subscriber.wait_for(2)
    finally:
        subscriber.stop()
    assert len(calls[1][2].ReferencedSeriesSequence[0].ReferencedSOPSequence) == 2
