"""The DIMSE server: one pynetdicom Application Entity serving every DICOM service.

Shutdown order matters for durability: stop accepting, let the C-STOREs being
ingested finish (each commits before it answers), then abort what is left. A data set
that was still arriving is never acknowledged, so the sender knows to send it again.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pydicom import Dataset
from pynetdicom import AE, _config, evt, register_uid, sop_class
from pynetdicom.events import Event
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.transport import ThreadedAssociationServer

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.mpps import COMPLETED, IN_PROGRESS, Step
from pacsnode.archive.routing import Router
from pacsnode.archive.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from pacsnode.archive.uids import (
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
)
from pacsnode.archive.worklist import Worklist
from pacsnode.config import Settings
from pacsnode.dimse import find_service, reactor, retrieve_scp, spool, tls
from pacsnode.dimse.access import AccessControl
from pacsnode.dimse.commitment import STORAGE_COMMITMENT, CommitmentSCP
from pacsnode.dimse.find_scp import FindSCP
from pacsnode.dimse.find_service import FindRequest
from pacsnode.dimse.ian import AvailabilityNotifier
from pacsnode.dimse.mpps_scp import MPPS_SOP_CLASS, MppsSCP
from pacsnode.dimse.prefetch import request_prefetch
from pacsnode.dimse.qr_model import (
    FIND_SOP_CLASSES,
    GET_SOP_CLASSES,
    MOVE_SOP_CLASSES,
    negotiate_extended,
)
from pacsnode.dimse.retrieve_scp import RetrieveSCP
from pacsnode.dimse.spanning import FindSpanning
from pacsnode.dimse.storage_scp import StorageSCP
from pacsnode.dimse.worklist_scp import MODALITY_WORKLIST_FIND, WorklistSCP
from pacsnode.jobs.workers import Workers

log = logging.getLogger("pacsnode.dimse")

SILENT_CONNECTIONS = 200
"""Open connections yet to send their A-ASSOCIATE-RQ that do not count against
``max_associations``; each is closed after ``acse_timeout``."""


class _NoDelayServer(ThreadedAssociationServer):
    """Disables Nagle's algorithm on every accepted connection.

    DIMSE is request/response: with Nagle on, each small response waits for the
    peer's delayed ACK, which caps a loopback sender at a few dozen objects a second.
    """

    request_queue_size = 128
    """socketserver's listen backlog of 5 drops the handshakes of a burst of callers,
    who then wait seconds for the kernel to retry them."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = super().get_request()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    def shutdown(self) -> None:
        """Stop accepting; unlike pynetdicom's, for a server made with make_server()."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class _TlsServer(tls.HandshakeInWorker, _NoDelayServer):
    """The DICOM TLS port: each connection's handshake runs on its own thread."""


def register_storage_classes() -> None:
    """Teach pynetdicom the storage classes it does not know (retired, private, new).

    Without this it aborts the association on the first C-STORE of such a class.
    """
    for number, uid in enumerate(STORAGE_SOP_CLASSES):
        if sop_class.uid_to_service_class(uid) is ServiceClass:  # unknown to pynetdicom
            register_uid(uid, f"PacsnodeStorage{number}", StorageServiceClass)


def _peer(event: Event) -> str:
    requestor = event.assoc.requestor
    return f"{requestor.ae_title}@{requestor.address}:{requestor.port}"


class DimseServer:
    def __init__(
        self, settings: Settings, archive: Archive, workers: Workers, router: Router | None = None
    ) -> None:
        self.settings = settings
        self.archive = archive
        self.jobs = workers.queue
        self.storage_scp = StorageSCP(archive, router)
        self.find_scp = FindSCP(archive)
        self.find_spanning = FindSpanning(settings, archive.remotes)
        self.retrieve_scp = RetrieveSCP(archive)
        self.commitment_scp = CommitmentSCP(archive, workers)
        self.notifier = AvailabilityNotifier(archive, workers)
        self.worklist = Worklist(archive.database, settings.worklist_hide_finished)
        self.worklist_scp = WorklistSCP(settings, self.worklist)
        self.mpps_scp = MppsSCP(archive, workers, self._on_step)
        self.access = AccessControl(settings, archive.remotes)
        self.ae = self._make_ae()
        self._server: ThreadedAssociationServer | None = None
        self._tls_context = tls.server_context(settings) if settings.tls_port else None
        self._tls_server: ThreadedAssociationServer | None = None
        self._started: dict[int, float] = {}

    def _make_ae(self) -> AE:
        register_storage_classes()
        settings = self.settings
        ae = AE(ae_title=settings.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        # AccessControl enforces max_associations on associations that asked; this one,
        # which counts every open connection, only stops a flood of silent ones.
        ae.maximum_associations = settings.max_associations + SILENT_CONNECTIONS
        ae.maximum_pdu_size = settings.max_pdu_size
        ae.network_timeout = settings.network_timeout
        ae.acse_timeout = settings.acse_timeout
        ae.dimse_timeout = settings.dimse_timeout
        ae.add_supported_context(VERIFICATION_SOP_CLASS, list(UNCOMPRESSED_TRANSFER_SYNTAXES))
        ae.add_supported_context(MPPS_SOP_CLASS, list(UNCOMPRESSED_TRANSFER_SYNTAXES))
        ae.add_supported_context(MODALITY_WORKLIST_FIND, list(UNCOMPRESSED_TRANSFER_SYNTAXES))
        # Both roles: we commit what others sent, and take reports on what we sent.
        ae.add_supported_context(
            STORAGE_COMMITMENT,
            list(UNCOMPRESSED_TRANSFER_SYNTAXES),
            scu_role=True,
            scp_role=True,
        )
        for query_class in (*FIND_SOP_CLASSES, *MOVE_SOP_CLASSES, *GET_SOP_CLASSES):
            ae.add_supported_context(query_class, list(UNCOMPRESSED_TRANSFER_SYNTAXES))
        for storage_class in STORAGE_SOP_CLASSES:
            # Both roles: a C-GET requestor asks us to act as the Storage SCU.
            ae.add_supported_context(
                storage_class, list(STORAGE_TRANSFER_SYNTAXES), scu_role=True, scp_role=True
            )
        return ae

    def _handlers(self) -> list[evt.EventHandlerType]:
        return [
            (evt.EVT_C_ECHO, lambda _event: 0x0000),
            (evt.EVT_C_STORE, self.storage_scp.handle_store),
            (evt.EVT_N_CREATE, self.mpps_scp.handle_create),
            (evt.EVT_N_SET, self.mpps_scp.handle_set),
            (evt.EVT_N_EVENT_REPORT, self.commitment_scp.handle_report),
            (evt.EVT_SOP_EXTENDED, negotiate_extended),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REQUESTED, self.access.on_requested),
            (evt.EVT_REJECTED, self.access.on_rejected),
            (evt.EVT_RELEASED, lambda event: self._on_closed(event, "released")),
            (evt.EVT_ABORTED, lambda event: self._on_closed(event, "aborted")),
        ]

    def _find(self, event: FindRequest) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        model = str(event.request.AffectedSOPClassUID)
        audit.query(audit.requestor_of(event.assoc), model, event.identifier)
        if model == MODALITY_WORKLIST_FIND:
            return self.worklist_scp.handle_find(event)
        answers = self.find_scp.handle_find(event)
        if self.find_spanning.applies(event.assoc.requestor.ae_title):
            return self.find_spanning.answers(event, answers)
        return answers

    def _on_step(self, step: Step) -> None:
        """What follows from a performed procedure step once it is stored."""
        self.worklist.follow(step.dataset, step.status)
        if step.status == IN_PROGRESS and step.created_at == step.updated_at:  # just created
            request_prefetch(self.jobs, self.settings, step.dataset, "step in progress")
        notify = self.settings.ian_on_mpps_completed and step.status == COMPLETED
        if notify and step.study_instance_uid:
            self.notifier.notify(step.study_instance_uid, step.sop_instance_uid)

    def _on_accepted(self, event: Event) -> None:
        self._started[id(event.assoc)] = time.monotonic()

    def _on_closed(self, event: Event, how: str) -> None:
        started = self._started.pop(id(event.assoc), None)
        if started is None:
            return  # rejected, or already logged
        elapsed = time.monotonic() - started
        self.storage_scp.audit(event.assoc)
        summary = self.storage_scp.summary(event.assoc)
        log.info(
            "association %s -> %s %s after %.1f s%s",
            _peer(event),
            event.assoc.acceptor.ae_title,
            how,
            elapsed,
            f": {summary}" if summary else "",
        )

    def start(self) -> None:
        spool_dir = self.archive.storage.receive_dir()
        _config.STORE_RECV_CHUNKED_DATASET = True
        # pynetdicom formats every identifier for its debug log, even when nothing logs
        # at that level: a fifth of the cost of each C-FIND answer.
        debug = self.settings.log_level.upper() == "DEBUG"
        _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = debug
        spool.install(Path(spool_dir))
        reactor.install()
        retrieve_scp.install(self.retrieve_scp)
        find_service.install(self._find, [*FIND_SOP_CLASSES, MODALITY_WORKLIST_FIND])
        self.commitment_scp.install()
        self.notifier.start()
        address = (self.settings.bind_address, self.settings.dicom_port)
        try:
            server = self.ae.make_server(
                address, evt_handlers=self._handlers(), server_class=_NoDelayServer
            )
        except OSError as exc:
            raise OSError(f"DIMSE port {address[0]}:{address[1]}: {exc.strerror}") from exc
        self._server = server
        thread = threading.Thread(target=server.serve_forever, name="dimse-accept", daemon=True)
        thread.start()
        log.info(
            "DIMSE server %s listening on %s:%d",
            self.settings.ae_title,
            *server.server_address[:2],
        )
        self._tls_server = self._serve_tls()

    def _serve_tls(self) -> ThreadedAssociationServer | None:
        """The DICOM TLS port, if configured: the same AE and handlers as the plain one."""
        if self._tls_context is None:
            return None
        address = (self.settings.bind_address, self.settings.tls_port)
        try:
            server = self.ae.make_server(
                address,
                evt_handlers=self._handlers(),
                server_class=_TlsServer,
                tls_context=self._tls_context,
                handshake_timeout=self.settings.acse_timeout,
            )
        except OSError as exc:
            raise OSError(f"DICOM TLS port {address[0]}:{address[1]}: {exc.strerror}") from exc
        thread = threading.Thread(target=server.serve_forever, name="dimse-tls-accept", daemon=True)
        thread.start()
        log.info(
            "DIMSE TLS server %s listening on %s:%d",
            self.settings.ae_title,
            *server.server_address[:2],
        )
        return server

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self.notifier.stop()
        if self._server is None:
            return
        self._server.shutdown()  # closes the listening socket too
        if self._tls_server is not None:
            self._tls_server.shutdown()
            self._tls_server = None
        grace = self.settings.shutdown_grace
        if not self.storage_scp.in_flight.wait_idle(grace):
            log.warning("C-STOREs still running after %.0f s; aborting", grace)
        for assoc in list(self.ae.active_associations):
            assoc.abort()
        self.storage_scp.in_flight.wait_idle(grace)
        self._server = None
