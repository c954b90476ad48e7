"""The DIMSE server of a node, its services wired to the archive and the workflows.

C-ECHO, C-STORE, C-FIND (Query/Retrieve and Modality Worklist, with C-FIND spanning),
C-MOVE and C-GET (with C-MOVE spanning), storage commitment (N-ACTION, and the
N-EVENT-REPORTs of those we asked) and MPPS (N-CREATE, N-SET): each a handler on
one server instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import Outcome
from pacsnode.archive.mpps import Step
from pacsnode.archive.worklist import Worklist
from pacsnode.config import Settings
from pacsnode.dimse.access import AccessControl
from pacsnode.dimse.commitment import CommitmentService
from pacsnode.dimse.find import Answer, FindRequest, FindService
from pacsnode.dimse.find_scp import FindSCP
from pacsnode.dimse.mpps_scp import MppsSCP
from pacsnode.dimse.requests import Session
from pacsnode.dimse.retrieve_scp import RetrieveService
from pacsnode.dimse.scu import Dialer
from pacsnode.dimse.server import DimseServer
from pacsnode.dimse.slots import AssociationSlots
from pacsnode.dimse.spanning import FindSpanning, MoveSpanning
from pacsnode.dimse.storage import StorageService
from pacsnode.dimse.worklist_scp import WorklistSCP
from pacsnode.jobs.workers import Workers
from pacsnode.net import commands

log = logging.getLogger("pacsnode.dimse")


def dimse_server(
    settings: Settings,
    archive: Archive,
    workers: Workers,
    dialer: Dialer,
    on_step: Callable[[Step], None],
    spool: Path,
    slots: AssociationSlots | None = None,
) -> DimseServer:
    server = DimseServer(settings, AccessControl(settings, archive.remotes), slots=slots)
    storage = StorageService(archive, spool)
    server.sink_factory = storage.sink_for
    find_scp = FindSCP(archive)
    spanning = FindSpanning(dialer, archive.remotes)

    def query(request: FindRequest) -> Iterator[Answer]:
        answers = find_scp.handle_find(request)
        if spanning.applies(request.calling_ae):
            request.slow = True
            return spanning.answers(request, answers)
        return answers

    worklist = WorklistSCP(
        settings, Worklist(archive.database, settings.worklist_hide_finished), archive.issuers
    )
    find = FindService(query, worklist.handle_find)
    retrieve = RetrieveService(archive, dialer, MoveSpanning(dialer, archive.remotes))
    commitment = CommitmentService(archive, workers, dialer)
    mpps = MppsSCP(archive, workers, on_step)
    server.handlers.update(
        {
            commands.C_STORE_RQ: storage.handle,
            commands.C_FIND_RQ: find.handle,
            commands.C_MOVE_RQ: retrieve.move,
            commands.C_GET_RQ: retrieve.get,
            commands.N_ACTION_RQ: commitment.handle_action,
            commands.N_EVENT_REPORT_RQ: commitment.handle_report,
            commands.N_CREATE_RQ: mpps.handle_create,
            commands.N_SET_RQ: mpps.handle_set,
        }
    )
    checker = settings.cluster.health_check_ae if settings.cluster is not None else ""
    server.on_end.append(lambda session, how: _ended(session, how, checker))
    return server


def _ended(session: Session, how: str, checker: str = "") -> None:
    """One audit message per association for what it sent us (PS3.15 A.5.3.6), and a
    log line with what it did (at DEBUG for the load balancer's health checks, which
    come every second or two)."""
    counts = session.outcomes
    failed = counts[Outcome.FAILED] + counts[Outcome.REFUSED]
    audit.instances_stored(session.actor, session.stored, failed=failed)
    done = [f"{counts[o]} {o.value}" for o in Outcome if counts[o]]
    if session.queries:
        done.append(f"{session.queries} C-FIND")
    summary = ", ".join(done)
    host, port = session.association.peer_address
    log.log(
        logging.DEBUG if checker and session.calling_ae == checker else logging.INFO,
        "association %s@%s:%d -> %s %s after %.1f s%s",
        session.calling_ae,
        host,
        port,
        session.association.called_ae,
        how,
        time.monotonic() - session.started,
        f": {summary}" if summary else "",
    )
