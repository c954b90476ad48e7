"""Retrieve into the archive: pull studies, series or instances from a remote node.

A retrieve is a job (kind ``retrieve``), so that it survives a restart, is retried
while the remote is away, and shows its progress and final report in the job's
``result``. Two ways to pull, chosen by what the remote offers:

* ``move``: C-MOVE with our own AE title as the destination. The remote must know us
  by that title; what it sends arrives through our Storage SCP like anything else.
* ``get``: C-GET; the instances arrive on the same association and are ingested here.

The request is checked when it is queued (unknown remote, nothing to retrieve, neither
method offered), so that the REST API and the CLI can refuse it at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import Received
from pacsnode.archive.receiving import Origin
from pacsnode.archive.remotes import RemoteNotFound, Remotes
from pacsnode.config import RemoteAE
from pacsnode.dimse import query_scu
from pacsnode.dimse.query_scu import MoveResult
from pacsnode.dimse.scu import AssociationFailed, Dialer, Peer
from pacsnode.dimse.storage import SpoolFile
from pacsnode.errors import FieldError, text_field, uid_list
from pacsnode.jobs.queue import JobQueue
from pacsnode.jobs.workers import Workers

log = logging.getLogger("pacsnode.retrieve")

RETRIEVE_JOB = "retrieve"
METHODS = ("move", "get")
LEVELS = ("STUDY", "SERIES", "IMAGE")
PROGRESS_INTERVAL = 0.5
"""Seconds between progress writes to the job row: one per response would be a write
per instance."""


class RetrieveError(FieldError):
    """A retrieve that cannot be asked for; ``field`` names the offending request field."""


class RetrieveIncomplete(Exception):
    """The remote answered, but not everything arrived: the attempt counts as failed."""


@dataclass(frozen=True)
class RetrieveRequest:
    """What to pull: a study, some of its series, or some instances of one series."""

    remote: str
    study: str
    series: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    method: str | None = None
    """The method asked for; ``None`` takes C-MOVE if the remote offers it."""

    @property
    def level(self) -> str:
        return "IMAGE" if self.instances else "SERIES" if self.series else "STUDY"

    def keys(self) -> dict[str, str]:
        keys = {"StudyInstanceUID": self.study}
        if self.series:
            keys["SeriesInstanceUID"] = "\\".join(self.series)
        if self.instances:
            keys["SOPInstanceUID"] = "\\".join(self.instances)
        return keys

    @classmethod
    def from_json(cls, remote: str, values: dict[str, Any]) -> RetrieveRequest:
        """From the REST API's body; ``level``, if given, must fit the UIDs given."""
        request = cls(
            remote=remote,
            study=text_field(values.get("study"), "study", RetrieveError),
            series=uid_list(values.get("series"), "series", RetrieveError),
            instances=uid_list(values.get("instances"), "instances", RetrieveError),
            method=values.get("method"),
        )
        level = values.get("level")
        if level is not None and str(level).upper() != request.level:
            raise RetrieveError(
                f"level {level} does not fit the UIDs given (they make {request.level})",
                "level",
            )
        request.check()
        return request

    def check(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise RetrieveError(f"method must be one of {', '.join(METHODS)}", "method")
        if not self.study:
            raise RetrieveError("study is required: the Study Instance UID", "study")
        if self.instances and len(self.series) != 1:
            raise RetrieveError("instances need the one series they belong to", "series")


def choose_method(remote: RemoteAE, wanted: str | None) -> str:
    """The method asked for if the remote offers it, else the other one it offers."""
    offered = [method for method in METHODS if remote.offers_service(method)]
    if not offered:
        raise RetrieveError(f"{remote.ae_title} offers neither C-MOVE nor C-GET", "method")
    return wanted if wanted in offered else offered[0]


def plan(remotes: Remotes, request: RetrieveRequest) -> tuple[dict[str, Any], str]:
    """The job's payload and description; raises if the retrieve cannot be asked for."""
    request.check()
    remote = remotes.get(request.remote)
    if remote is None:
        raise RemoteNotFound(f"no remote AE {request.remote!r}")
    method = choose_method(remote, request.method)
    payload = {
        "remote": remote.ae_title,
        "level": request.level,
        "study": request.study,
        "series": list(request.series),
        "instances": list(request.instances),
        "method": method,
    }
    uids = request.instances or request.series or (request.study,)
    more = f" and {len(uids) - 1} more" if len(uids) > 1 else ""
    what = f"{request.level.lower()} {uids[0]}{more}"
    return payload, f"retrieve {what} from {remote.ae_title} by C-{method.upper()}"


def enqueue(queue: JobQueue, remotes: Remotes, request: RetrieveRequest) -> int:
    """Queue a retrieve as the CLI does, without workers in this process."""
    payload, description = plan(remotes, request)
    return queue.enqueue(RETRIEVE_JOB, payload, description)


def report(result: MoveResult, state: str, method: str, **extra: Any) -> dict[str, Any]:
    """The job's ``result``: counts and, at the end, the failed UIDs and final status."""
    return {
        "state": state,
        "method": method,
        "status": None if result.status < 0 else f"0x{result.status:04X}",
        "completed": result.completed,
        "failed": result.failed,
        "warning": result.warning,
        "remaining": result.remaining,
        "failed_sop_instance_uids": result.failed_sop_instance_uids,
        "comment": result.comment,
        **extra,
    }


class Retriever:
    """Runs ``retrieve`` jobs in the server; registered with its workers."""

    def __init__(self, archive: Archive, workers: Workers, dialer: Dialer) -> None:
        self.archive = archive
        self.workers = workers
        self.dialer = dialer
        workers.register(RETRIEVE_JOB, self.run)

    def run(self, payload: dict[str, Any]) -> None:
        """The job: one C-MOVE or C-GET, its progress and its report in the job row."""
        remote = self.archive.remotes.get(payload["remote"])
        if remote is None:
            raise LookupError(f"{payload['remote']} is no longer a remote AE")
        method = choose_method(remote, payload["method"])
        pk = self.workers.current_job().pk
        request = RetrieveRequest(
            remote.ae_title,
            payload["study"],
            tuple(payload["series"]),
            tuple(payload["instances"]),
            method,
        )
        peer = self.dialer.peer(remote)
        progress = _Progress(self.workers.queue, pk, method)
        refused: list[str] = []
        if method == "move":
            result = query_scu.move(
                peer,
                "study",
                request.level,
                request.keys(),
                self.archive.settings.ae_title,
                progress,
            )
        else:
            store = _Keeper(self.archive, remote.ae_title, refused)
            classes = _sop_classes(peer, request) if remote.offers_service("find") else []
            spool = self.archive.storage.spool_dir()
            result = query_scu.get(
                peer, "study", request.level, request.keys(), store, spool, progress, classes
            )
        failed = list(dict.fromkeys([*result.failed_sop_instance_uids, *refused]))
        ok = result.ok and not refused
        final = report(
            result,
            "done" if ok else "incomplete",
            method,
            failed_sop_instance_uids=failed,
        )
        progress.write(final)
        if not ok:
            raise RetrieveIncomplete(
                f"status 0x{result.status:04X}, {result.completed} completed, "
                f"{max(result.failed, len(failed))} failed {result.comment}".strip()
            )


class _Progress:
    """Writes the counts of pending responses into the job row, now and then."""

    def __init__(self, queue: JobQueue, pk: int, method: str) -> None:
        self.queue = queue
        self.pk = pk
        self.method = method
        self._written = 0.0

    def __call__(self, result: MoveResult) -> None:
        if time.monotonic() - self._written >= PROGRESS_INTERVAL:
            self.write(report(result, "running", self.method))

    def write(self, values: dict[str, Any]) -> None:
        self.queue.report(self.pk, values)
        self._written = time.monotonic()


def _sop_classes(peer: Peer, request: RetrieveRequest) -> list[str]:
    """The SOP classes of what a C-GET will bring, so that it can come compressed as
    the remote keeps it; none (uncompressed only) if the remote will not say.

    Asked level by level, as a hierarchical Q/R SCP requires: the series of the
    study, then the instances of each series.
    """
    try:
        series = list(request.series) or [
            str(answer.SeriesInstanceUID)
            for answer in query_scu.find(
                peer,
                "study",
                "SERIES",
                {"StudyInstanceUID": request.study, "SeriesInstanceUID": ""},
            )
        ]
        classes: set[str] = set()
        for uid in series:
            keys = {"StudyInstanceUID": request.study, "SeriesInstanceUID": uid}
            keys |= {"SOPInstanceUID": "\\".join(request.instances), "SOPClassUID": ""}
            answers = query_scu.find(peer, "study", "IMAGE", keys)
            classes.update(str(a.SOPClassUID) for a in answers if a.get("SOPClassUID"))
        return sorted(classes)
    except (AssociationFailed, query_scu.QueryFailed) as exc:
        log.info("SOP classes of %s unknown, retrieving uncompressed: %s", request.study, exc)
        return []


class _Keeper:
    """The C-STORE side of a C-GET: each instance received like a C-STORE from the
    remote (its spool file already names the remote as the source)."""

    def __init__(self, archive: Archive, source_ae: str, refused: list[str]) -> None:
        self.archive = archive
        self.source_ae = source_ae
        self.refused = refused

    def __call__(self, spooled: SpoolFile) -> int:
        received = Received(
            path=spooled.path,
            transfer_syntax=spooled.syntax,
            expected_sop_class=spooled.sop_class,
            expected_sop_instance=spooled.sop_instance,
            prepared=spooled.prepared(),
        )
        result = self.archive.receive(received, Origin("C-GET", self.source_ae))
        if not result.ok:
            self.refused.append(spooled.sop_instance)
        return result.status
