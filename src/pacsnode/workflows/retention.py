"""The retention job: :mod:`pacsnode.archive.retention` run through the job queue.

When a rule is on, the node's primary process queues a ``retention`` job every
``retention_interval`` seconds (never a second while one waits); ``POST
/api/retention/run`` queues one at once. The job's result is its report: which studies
it removed and why.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pacsnode.archive.core import Archive
from pacsnode.archive.retention import Retention, enabled
from pacsnode.jobs.workers import Workers

log = logging.getLogger("pacsnode.retention")

RETENTION_JOB = "retention"
QUEUE_KEY = "retention"


class RetentionJobs:
    def __init__(self, archive: Archive, workers: Workers) -> None:
        self.archive = archive
        self.workers = workers
        self.retention = Retention.of(archive.deletion, archive.settings)
        workers.register(RETENTION_JOB, self.run)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self, why: str) -> int | None:
        """Queue a run unless one is waiting; the new job's id, or None."""
        return self.workers.enqueue_once(RETENTION_JOB, {}, f"retention ({why})", QUEUE_KEY)

    def run(self, _payload: dict[str, Any]) -> None:
        """The job: apply the rules, and keep what was removed as the job's result."""
        report = self.retention.run()
        self.workers.queue.report(self.workers.current_job().pk, report.as_json())
        log.info("retention removed %d studies", len(report.removed))

    def start(self) -> None:
        """Queue runs periodically, when a rule is on (call in the primary process)."""
        if enabled(self.archive.settings):
            self._thread = threading.Thread(target=self._watch, name="retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch(self) -> None:
        interval = self.archive.settings.retention_interval
        while True:
            try:
                self.request("scheduled")
            except Exception:
                log.exception("cannot queue the retention job")
            if self._stop.wait(interval):
                return
