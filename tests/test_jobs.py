"""The durable job queue: on SQLite and PostgreSQL, through the REST API and the CLI."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port
from peers import pacsnode_cli, send_datasets
from pydicom import Dataset
from pydicom.uid import CTImageStorage, generate_uid
from pynetdicom import AE

from pacsnode.archive.database import migrate, open_database
from pacsnode.jobs.queue import SUPERSEDED, Deferred, JobError, JobQueue, JobStatus
from pacsnode.jobs.workers import Workers

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"


@pytest.fixture
def queue(database_url: str) -> JobQueue:
    database = open_database(database_url)
    migrate(database.writer)
    return JobQueue(database, max_attempts=3, backoff=0.2)


def test_failed_attempts_back_off_then_give_up(queue: JobQueue) -> None:
    pk = queue.enqueue("report", {"to": "MODALITY"}, "a report")
    claimed = queue.claim(["report"])
    assert claimed is not None and claimed.pk == pk and claimed.payload == {"to": "MODALITY"}
    assert queue.claim(["report"]) is None  # running: nobody else takes it
    backoffs = []
    for attempt, job in enumerate([claimed, None]):
        if job is None:  # due again once its backoff is over
            while (job := queue.claim(["report"])) is None:
                time.sleep(0.02)
        failed_at = datetime.now(UTC)
        assert queue.fail(job, "refused") is JobStatus.PENDING, attempt
        assert queue.claim(["report"]) is None  # not due before its backoff
        backoffs.append((queue.get(pk).next_run_at - failed_at).total_seconds())
    assert backoffs[0] >= 0.2 and backoffs[1] >= 0.4  # doubled after each failure
    while (again := queue.claim(["report"])) is None:
        time.sleep(0.02)
    assert queue.fail(again, "refused again") is JobStatus.FAILED
    failed = queue.get(pk)
    assert (failed.status, failed.attempts, failed.last_error) == (
        JobStatus.FAILED,
        3,
        "refused again",
    )
    queue.retry(pk)
    assert queue.get(pk).status is JobStatus.PENDING and queue.get(pk).attempts == 0
    queue.cancel(pk)
    assert queue.claim(["report"]) is None
    with pytest.raises(JobError):
        queue.cancel(pk)  # already cancelled
    with pytest.raises(JobError):
        queue.retry(pk + 1000)


def test_a_job_of_an_unknown_kind_waits(queue: JobQueue) -> None:
    queue.enqueue("later", {})
    assert queue.claim(["report"]) is None
    assert queue.claim(["later", "report"]) is not None


def test_running_jobs_run_again_after_a_crash(queue: JobQueue) -> None:
    pk = queue.enqueue("report", {})
    other = queue.enqueue("report", {})
    assert queue.claim(["report"], "node-a:101") is not None
    assert queue.claim(["report"], "node-b:202") is not None
    assert queue.recover("node-a") == 1  # this node's own, not the other node's
    assert queue.get(pk).status is JobStatus.PENDING
    assert queue.get(other).status is JobStatus.RUNNING


def test_a_lapsed_lease_lets_another_process_take_the_job(queue: JobQueue) -> None:
    short = JobQueue(queue.database, lease=0.3)  # a process that then stops renewing
    pk = short.enqueue("report", {})
    claimed = short.claim(["report"], "node-a:101")
    assert claimed is not None and claimed.claimed_by == "node-a:101"
    assert queue.claim(["report"], "node-b:303") is None  # held
    short.renew("node-a:101", [pk])
    assert queue.claim(["report"], "node-b:303") is None  # renewed, still held
    time.sleep(0.5)
    taken = queue.claim(["report"], "node-b:303")
    assert taken is not None and taken.pk == pk and taken.claimed_by == "node-b:303"


def test_delayed_jobs_and_one_pending_job_per_key(queue: JobQueue) -> None:
    pk = queue.enqueue_once("wait", {}, "first", "wait/a", delay=60)
    assert pk is not None and queue.pending("wait/a")
    assert queue.enqueue_once("wait", {}, "second", "wait/a", delay=60) is None
    assert queue.enqueue_once("wait", {}, "other key", "wait/b") is not None
    claimed = queue.claim(["wait"])
    assert claimed is not None and claimed.queue_key == "wait/b"  # wait/a is not due
    assert queue.claim(["wait"]) is None
    queue.complete(claimed.pk)
    assert not queue.pending("wait/b")
    assert queue.enqueue_once("wait", {}, "again", "wait/b", delay=60) is not None


def test_a_deferred_job_runs_later_without_a_failed_attempt(queue: JobQueue) -> None:
    pk = queue.enqueue("wait", {})
    claimed = queue.claim(["wait"])
    assert claimed is not None
    queue.defer(claimed, 60)
    deferred = queue.get(pk)
    assert (deferred.status, deferred.attempts, deferred.last_error) == (
        JobStatus.PENDING,
        0,
        None,
    )
    assert queue.claim(["wait"]) is None  # not due for a minute
    assert queue.get(pk).next_run_at > claimed.next_run_at


def test_workers_turn_deferred_into_a_later_run(queue: JobQueue) -> None:
    workers = Workers(queue, count=1, poll_interval=0.05)
    calls: list[int] = []
    finished = threading.Event()

    def not_at_first(payload: dict[str, int]) -> None:
        calls.append(payload["n"])
        if len(calls) < 3:
            raise Deferred(0.05)
        finished.set()

    workers.register("wait", not_at_first)
    pk = workers.enqueue("wait", {"n": 1})
    workers.start()
    try:
        assert finished.wait(20)
    finally:
        workers.stop()
    done = queue.get(pk)
    assert calls == [1, 1, 1]
    assert (done.status, done.attempts, done.last_error) == (JobStatus.DONE, 1, None)


def test_concurrent_workers_never_take_the_same_job(queue: JobQueue) -> None:
    for number in range(60):
        queue.enqueue("report", {"n": number})
    taken: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (claimed := queue.claim(["report"])) is not None:
            with lock:
                taken.append(claimed.payload["n"])
            queue.complete(claimed.pk)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(60))
    assert Counter(job.status for job in queue.list(limit=100)) == {JobStatus.DONE: 60}


def failing_report(server_factory: ServerFactory) -> tuple[RunningServer, int]:
    """A server whose one job (a commitment report to an absent modality) keeps failing."""
    remote = {
        "ae_title": "MODALITY",
        "host": "127.0.0.1",
        "port": free_port(),
        "commitment_report": "new",
    }
    server = server_factory(remotes=[remote], job_retry_delay=30)
    dataset = ct_dataset()
    assert send_datasets(server.port, [dataset]) == [0]
    info = Dataset()
    info.TransactionUID = generate_uid()
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
    info.ReferencedSOPSequence = [item]
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(STORAGE_COMMITMENT)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="PACSNODE")
    assert assoc.send_n_action(info, 1, STORAGE_COMMITMENT, "1.2.840.10008.1.20.1.1")[0].Status == 0
    assoc.release()
    server.wait_for_log("will retry")
    return server, 1


def test_jobs_through_the_rest_api(server_factory: ServerFactory) -> None:
    server, pk = failing_report(server_factory)
    base = server.url
    listed = httpx.get(f"{base}/api/jobs").json()
    assert [(j["id"], j["kind"], j["status"], j["attempts"]) for j in listed] == [
        (pk, "commitment-report", "pending", 1)
    ]
    assert "cannot connect" in listed[0]["last_error"]
    assert httpx.get(f"{base}/api/jobs", params={"status": "failed"}).json() == []
    assert httpx.get(f"{base}/api/jobs", params={"status": "bogus"}).status_code == 400
    cancelled = httpx.post(f"{base}/api/jobs/{pk}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert httpx.post(f"{base}/api/jobs/{pk}/cancel").status_code == 409
    retried = httpx.post(f"{base}/api/jobs/{pk}/retry").json()
    assert (retried["status"], retried["attempts"]) == ("pending", 0)
    assert httpx.get(f"{base}/api/jobs/{pk + 1}").status_code == 404
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/api/jobs/{pk}").json()["attempts"] == 0:
        assert time.monotonic() < deadline, "the retried job did not run"
        time.sleep(0.1)


def test_jobs_through_the_cli(server_factory: ServerFactory) -> None:
    server, pk = failing_report(server_factory)
    config = str(server.config_path)
    listed = pacsnode_cli("jobs", "list", "--config", config)
    assert listed.returncode == 0, listed.stderr
    assert "commitment-report" in listed.stdout and "pending" in listed.stdout
    assert "cannot connect" in listed.stdout
    cancelled = pacsnode_cli("jobs", "cancel", str(pk), "--config", config)
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"job {pk}: cancelled")
    again = pacsnode_cli("jobs", "cancel", str(pk), "--config", config)
    assert again.returncode == 1 and "is cancelled" in again.stderr
    assert "cancelled" in pacsnode_cli("jobs", "list", "--status", "cancelled", "-c", config).stdout


def test_jobs_with_one_key_run_in_order(queue: JobQueue) -> None:
    create = queue.enqueue("forward", {"op": "create"}, queue_key="DEST/1.2.3")
    update = queue.enqueue("forward", {"op": "set"}, queue_key="DEST/1.2.3")
    other = queue.enqueue("forward", {"op": "create"}, queue_key="DEST/4.5.6")
    first = queue.claim(["forward"])
    assert first is not None and first.pk == create
    second = queue.claim(["forward"])
    assert second is not None and second.pk == other  # the N-SET waits for its N-CREATE
    assert queue.fail(first, "away") is JobStatus.PENDING
    assert queue.claim(["forward"]) is None
    queue.retry(create)
    again = queue.claim(["forward"])
    assert again is not None and again.pk == create
    queue.complete(create)
    last = queue.claim(["forward"])
    assert last is not None and last.pk == update


def test_racing_enqueue_once_makes_one_job(queue: JobQueue) -> None:
    """Nodes that queue the same job at the same moment (two instances of one study
    arriving on two nodes) make one: the unique index decides, not a lock of one
    process. Each thread has its own connection, as each node has."""

    def queue_once(key: str, start: threading.Barrier, made: list[int | None]) -> None:
        start.wait()
        made.append(queue.enqueue_once("wait", {}, "racing", key, delay=60))

    for round_ in range(5):
        key = f"route-wait/rule/1.2.3.{round_}"
        start = threading.Barrier(8)
        made: list[int | None] = []
        threads = [threading.Thread(target=queue_once, args=(key, start, made)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len([pk for pk in made if pk is not None]) == 1, made
        pending = [j for j in queue.list(JobStatus.PENDING, 1000) if j.queue_key == key]
        assert len(pending) == 1


def test_a_job_queued_once_gives_way_to_a_pending_one_of_its_key(queue: JobQueue) -> None:
    first = queue.enqueue_once("wait", {}, "first", "wait/a")
    running = queue.claim(["wait"], "node-a:1")
    assert running is not None and running.pk == first
    second = queue.enqueue_once("wait", {}, "queued while the first runs", "wait/a", delay=60)
    assert second is not None
    queue.defer(running, 30)  # the first would wait again beside the second: it gives way
    assert queue.get(first).status is JobStatus.CANCELLED
    assert queue.get(first).last_error == SUPERSEDED
    assert queue.get(second).status is JobStatus.PENDING
    with pytest.raises(JobError, match="another job with its key is pending"):
        queue.retry(first)
    again = queue.claim(["wait"], "node-b:2")
    assert again is None  # the second is not due yet; nothing else is pending
    third = queue.enqueue_once("wait", {}, "other", "wait/b")
    assert third is not None
    claimed = queue.claim(["wait"], "node-b:2")
    assert claimed is not None and claimed.pk == third
    assert queue.recover("node-b") == 1  # back to pending: no other holds its key
    assert queue.get(third).status is JobStatus.PENDING
