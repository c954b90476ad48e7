"""Worker threads that run the queued jobs, each kind by its registered handler.

Every process of every node may run workers on the same queue; the leases of the jobs
this process runs are renewed by a thread of its own (see :mod:`pacsnode.jobs.queue`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from pacsnode.jobs.queue import SUPERSEDED, Abandoned, Deferred, Job, JobQueue, JobStatus

log = logging.getLogger("pacsnode.jobs")

Handler = Callable[[dict[str, Any]], None]
"""Runs one job from its payload; an exception means the attempt failed, except
:class:`~pacsnode.jobs.queue.Deferred`, which means "not yet", and
:class:`~pacsnode.jobs.queue.Abandoned`, which means "failed, do not retry"."""


class Workers:
    def __init__(
        self, queue: JobQueue, count: int = 2, poll_interval: float = 1.0, node: str = ""
    ) -> None:
        self.queue = queue
        self.count = count
        self.poll_interval = poll_interval
        self.handlers: dict[str, Handler] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running = threading.local()
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self.node = node or socket.gethostname()
        """The node's name in the claims of its processes: a cluster node's own name."""

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        description: str = "",
        queue_key: str | None = None,
        delay: float = 0.0,
    ) -> int:
        """Queue a job and wake a worker for it at once."""
        self._check(kind)
        pk = self.queue.enqueue(kind, payload, description, queue_key, delay)
        self._wake.set()
        return pk

    def enqueue_once(
        self,
        kind: str,
        payload: dict[str, Any],
        description: str,
        queue_key: str,
        delay: float = 0.0,
    ) -> int | None:
        """Queue a job unless one with ``queue_key`` is pending (see JobQueue)."""
        self._check(kind)
        pk = self.queue.enqueue_once(kind, payload, description, queue_key, delay)
        if pk is not None:
            self._wake.set()
        return pk

    def _check(self, kind: str) -> None:
        if kind not in self.handlers:
            raise ValueError(f"no handler for jobs of kind {kind!r}")

    def current_job(self) -> Job:
        """The job this worker thread is running, for a handler that reports progress
        into its row."""
        job: Job = self._running.job
        return job

    def wake(self) -> None:
        self._wake.set()

    @property
    def owner(self) -> str:
        """Who claims: this node and process (a forked worker process has its own)."""
        return f"{self.node}:{os.getpid()}"

    def recover(self) -> None:
        """Make what an earlier run of this node left running due again; call once per
        node start, before any process of it runs jobs."""
        recovered = self.queue.recover(self.node)
        if recovered:
            log.info("%d jobs interrupted by the last stop will run again", recovered)

    def start(self) -> None:
        for number in range(self.count):
            thread = threading.Thread(target=self._run, name=f"job-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        renewer = threading.Thread(target=self._renew, name="job-leases", daemon=True)
        renewer.start()
        self._threads.append(renewer)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _renew(self) -> None:
        while not self._stop.wait(self.queue.lease / 3):
            with self._held_lock:
                held = sorted(self._held)
            try:
                self.queue.renew(self.owner, held)
            except Exception:
                log.exception("cannot renew the leases of running jobs")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.queue.claim(list(self.handlers), self.owner)
            except Exception:
                log.exception("cannot read the job queue")
                claimed = None
            if claimed is None:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
                continue
            self._execute(claimed)

    def _execute(self, claimed: Job) -> None:
        self._running.job = claimed
        with self._held_lock:
            self._held.add(claimed.pk)
        try:
            self._handle(claimed)
        finally:
            with self._held_lock:
                self._held.discard(claimed.pk)

    def _handle(self, claimed: Job) -> None:
        try:
            self.handlers[claimed.kind](claimed.payload)
        except Deferred as deferred:
            self.queue.defer(claimed, deferred.seconds)
            log.debug("job %d (%s) %s", claimed.pk, claimed.kind, deferred)
            return
        except Abandoned as exc:
            self.queue.fail(claimed, str(exc), final=True)
            log.warning("job %d (%s) failed, not retried: %s", claimed.pk, claimed.kind, exc)
            return
        except Exception as exc:
            status = self.queue.fail(claimed, f"{type(exc).__name__}: {exc}")
            how = {JobStatus.FAILED: "gave up", JobStatus.CANCELLED: SUPERSEDED}.get(
                status, "will retry"
            )
            log.warning(
                "job %d (%s) attempt %d failed, %s: %s",
                claimed.pk,
                claimed.kind,
                claimed.attempts + 1,
                how,
                exc,
            )
            return
        self.queue.complete(claimed.pk)
        log.info("job %d (%s) done: %s", claimed.pk, claimed.kind, claimed.description)
