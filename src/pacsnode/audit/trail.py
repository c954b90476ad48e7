"""The audit trail of one process: where messages go, and the thread that builds them.

An event is queued as a function that builds its message once the studies it names are
read from the index; one thread runs them, writes the local log and hands the frame to
the syslog sender. Whoever is audited only pays for putting an item in a queue.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pacsnode.archive.database import Database
from pacsnode.audit.journal import Journal
from pacsnode.audit.lookup import describe, instance_counts
from pacsnode.audit.messages import Builder, Message, Participant, Source, Study
from pacsnode.audit.syslog import Collector, SyslogSender, frame
from pacsnode.config import Settings

log = logging.getLogger("pacsnode.audit")

Build = Callable[[list[Study]], Message]
_GATHER = 0.02
"""Seconds the trail waits, once woken, for more events to record together."""
_BATCH = 500


@dataclass(frozen=True)
class _Pending:
    build: Build
    instances: tuple[str, ...] = ()
    studies: tuple[Study, ...] = ()


class Trail:
    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self.hostname = socket.gethostname()
        # A cluster's nodes share an AE title: each audits as itself (its node name).
        source = settings.cluster.node if settings.cluster is not None else settings.ae_title
        self.builder = Builder(Source(source))
        self.application = Participant(
            settings.ae_title, self.hostname, alternative_id=f"AETITLES={settings.ae_title}"
        )
        self.database = database
        self.journal = Journal(settings.data_dir / "audit") if settings.audit_log else None
        self.sender = (
            SyslogSender(Collector.parse(settings.audit_syslog), settings.audit_tls_ca)
            if settings.audit_syslog
            else None
        )
        self._queue: queue.Queue[_Pending | None] = queue.Queue(10_000)
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def emit(
        self, build: Build, instances: Iterable[str] = (), studies: Iterable[Study] = ()
    ) -> None:
        try:
            self._queue.put_nowait(_Pending(build, tuple(instances), tuple(studies)))
        except queue.Full:
            log.warning("audit queue full: a message was dropped")

    def studies_of(self, instances: Iterable[str]) -> list[Study]:
        """Now, in the caller's thread: for instances about to leave the index."""
        if self.database is None:
            return []
        return describe(self.database, instances)

    def whole_studies(self, studies: Iterable[Study]) -> set[str]:
        """Which of these studies (as :meth:`studies_of` read them) hold no other
        instances, hidden ones included: those a deletion removes whole."""
        studies = list(studies)
        if self.database is None or not studies:
            return set()
        held = instance_counts(self.database, [study.uid for study in studies])
        return {
            study.uid for study in studies if held.get(study.uid) == sum(study.sop_classes.values())
        }

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10.0)
        if self.sender is not None:
            self.sender.close()

    def _run(self) -> None:
        """Wake for an event, let more gather for a moment, then record them all: a
        stream of C-FINDs wakes this thread once per batch, not once per query, and
        the thread it would take the interpreter from is the one answering them."""
        running = True
        while running:
            batch = [self._queue.get()]
            time.sleep(_GATHER)
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            running = None not in batch
            messages = []
            for pending in batch:
                if pending is None:
                    continue
                try:
                    messages.append(self._built(pending))
                except Exception:  # an audit failure never stops the trail
                    log.exception("audit message failed")
            self._record(messages)

    def _built(self, pending: _Pending) -> Message:
        studies = list(pending.studies)
        if pending.instances:
            studies += self.studies_of(pending.instances)
        return pending.build(studies)

    def _record(self, messages: list[Message]) -> None:
        try:
            if self.sender is not None:
                for message in messages:
                    self.sender.send(
                        frame(message.xml, message.outcome, message.time, self.hostname)
                    )
            if self.journal is not None:
                self.journal.append(messages)
        except Exception:  # an audit failure never stops the trail
            log.exception("audit messages failed")
