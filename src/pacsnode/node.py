"""Everything ``pacsnode serve`` runs: the archive, its job workers and the servers.

Start order: the index first (migrations, interrupted jobs), then the workers that
send what is queued, then the doors. Stop order is the reverse, so that what the
doors accept still reaches the index and the queue.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.metadata import MetadataWarmer
from pacsnode.archive.mpps import COMPLETED, IN_PROGRESS, Step
from pacsnode.archive.nodes import Heartbeat, Nodes
from pacsnode.archive.worklist import Worklist
from pacsnode.config import Settings
from pacsnode.dimse import tls
from pacsnode.dimse.scu import Dialer
from pacsnode.dimse.services import dimse_server
from pacsnode.dimse.slots import AssociationSlots
from pacsnode.hl7.listener import Hl7Listener
from pacsnode.jobs.queue import LEASE, JobQueue
from pacsnode.jobs.workers import Workers
from pacsnode.web.app import create_app
from pacsnode.web.server import HttpServer
from pacsnode.workflows.ian import AvailabilityNotifier
from pacsnode.workflows.iocm import IocmSender
from pacsnode.workflows.mpps_forward import FORWARD_JOB, MppsForwarder
from pacsnode.workflows.prefetch import Prefetcher, on_scheduled, request_prefetch
from pacsnode.workflows.print_jobs import PrintJobs
from pacsnode.workflows.retention import RetentionJobs
from pacsnode.workflows.retrieve import Retriever
from pacsnode.workflows.route_sender import RouteSender
from pacsnode.workflows.routing import Router, import_rules_file
from pacsnode.workflows.sending import STORE_JOB

log = logging.getLogger("pacsnode")


@dataclass
class Listeners:
    """The node's listening sockets, bound once and shared by its worker processes."""

    dimse: socket.socket
    tls: socket.socket | None = None
    http: socket.socket | None = None


def bind(settings: Settings) -> Listeners:
    """Bind the node's ports; a port that cannot be had is named in the error."""
    host = settings.bind_address
    dimse = _bound(host, settings.dicom_port, "DIMSE port")
    tls_port = _bound(host, settings.tls_port, "DICOM TLS port") if settings.tls_port else None
    http = None
    if settings.http_port:
        http_host = _http_host(settings)
        if http_host != settings.http_bind_address:
            log.warning(
                'http_auth is "none": the HTTP server listens on %s only, not on %s; '
                'set http_auth to "basic" or "oauth2" to serve other machines',
                http_host,
                settings.http_bind_address,
            )
        http = _bound(http_host, settings.http_port, "HTTP port")
    return Listeners(dimse, tls_port, http)


def close_listeners(listeners: Listeners) -> None:
    """The parent of worker processes lets go of the node's sockets as it stops: the
    workers' own stop ends the listening (after leaving the load balancer), and then
    no connection waits in a queue that nobody takes from any more."""
    for sock in (listeners.dimse, listeners.tls, listeners.http):
        if sock is not None:
            sock.close()


class Node:
    """One process's share of the node: the archive, its job workers, the doors.

    ``archive`` is the one ``settings`` name, opened by the caller (which says which
    one it is, and refuses to make one where none was asked for). ``primary`` is the
    process that also does the node's background duties (metadata documents, study
    stability watch, the HL7 listener, the node's heartbeat): one process of a node.
    """

    def __init__(
        self,
        settings: Settings,
        archive: Archive,
        slots: AssociationSlots | None = None,
        primary: bool = True,
    ) -> None:
        self.settings = settings
        self.primary = primary
        self.archive = archive
        self.dialer = Dialer(settings, self.archive.remotes.get)
        self.dialer.tls.check()
        lease = settings.cluster.job_lease if settings.cluster is not None else LEASE
        self.jobs = JobQueue(
            self.archive.database, settings.job_max_attempts, settings.job_retry_delay, lease
        )
        self.workers = Workers(self.jobs, settings.job_workers, node=settings.node_name)
        Retriever(self.archive, self.workers, self.dialer)  # runs retrieve jobs
        PrintJobs(self.archive, self.workers)  # runs print jobs
        self.router = Router(self.archive, self.workers)
        sender = RouteSender(self.archive, self.workers, self.dialer)  # runs the router's jobs
        self.workers.register(STORE_JOB, sender.send)  # and the sends asked for over REST
        Prefetcher(self.archive, self.workers, self.dialer)  # runs prefetch jobs
        self.workers.register(FORWARD_JOB, MppsForwarder(self.dialer))
        self.notifier = AvailabilityNotifier(self.archive, self.workers, self.dialer)
        IocmSender(self.archive, self.workers, self.dialer)  # notes for what is deleted
        self.retention = RetentionJobs(self.archive, self.workers)
        self.worklist = Worklist(self.archive.database, settings.worklist_hide_finished)
        self.warmer = MetadataWarmer(self.archive.metadata)
        self.tls_context = tls.server_context(settings) if settings.tls_port else None
        self.dimse = dimse_server(
            settings,
            self.archive,
            self.workers,
            self.dialer,
            self._on_step,
            self.archive.storage.spool_dir(),
            slots,
        )
        self.orders = (
            Hl7Listener(
                Worklist(
                    self.archive.database,
                    settings.worklist_hide_finished,
                    on_scheduled(self.jobs, settings),
                    self.archive.issuers,
                ),
                self.archive.patients,
                settings.bind_address,
                settings.hl7_port,
            )
            if settings.hl7_port and primary
            else None
        )
        self.heartbeat = Heartbeat(
            Nodes(self.archive.database), settings, lambda: self.dimse.slots.count
        )
        self.http = (
            HttpServer(
                create_app(self.archive, self.workers, self.router, self.retention),
                _http_host(settings),
                settings.http_port,
                tls.https_context(settings),
            )
            if settings.http_port
            else None
        )

    def _on_step(self, step: Step) -> None:
        """What follows from a performed procedure step once it is stored."""
        self.worklist.follow(step.dataset, step.status)
        if step.status == IN_PROGRESS and step.created_at == step.updated_at:  # just created
            request_prefetch(self.jobs, self.settings, step.dataset, "step in progress")
        notify = self.settings.ian_on_mpps_completed and step.status == COMPLETED
        if notify and step.study_instance_uid:
            self.notifier.notify(step.study_instance_uid, step.sop_instance_uid)

    def prepare(self) -> None:
        """What a node does once as it starts, before any process serves: clean up
        after its own interrupted run (never another node's files or jobs), make its
        interrupted jobs due again, move an older version's ``routes.json`` into the
        index."""
        removed = self.archive.storage.clean_partial_files()
        if removed:
            log.info("removed %d partial files left by an interrupted run", removed)
        self.workers.recover()
        import_rules_file(self.archive)

    def start(self, listeners: Listeners | None = None) -> None:
        """Serve: on ``listeners`` bound by the parent of worker processes, else on
        ports bound here."""
        audit.configure(self.settings, self.archive.database)
        listeners = listeners or bind(self.settings)
        self.archive.storage.spool_dir().mkdir(exist_ok=True)
        self.workers.start()
        if self.primary:
            self.warmer.start()
            self.notifier.start()
            self.retention.start()
        try:
            self.dimse.listen(listeners.dimse)
            if listeners.tls is not None and self.tls_context is not None:
                self.dimse.listen(listeners.tls, self.tls_context)
            if self.http is not None and listeners.http is not None:
                self.http.start(listeners.http)
            if self.orders is not None:
                self.orders.start()
        except OSError:  # a port in use: what did start stops again
            self.stop()
            raise
        if self.primary:
            self.heartbeat.start()
            audit.application_started()

    def stop(self) -> None:
        self.dimse.leave_balancer()  # everything serves until the balancer looks away
        if self.orders is not None:
            self.orders.stop()
        if self.http is not None:
            self.http.stop()
        self.dimse.stop()
        if self.primary:
            self.retention.stop()
            self.heartbeat.stop()
            self.notifier.stop()
            self.warmer.stop()
        self.workers.stop()
        if self.primary:
            audit.application_stopped()
        audit.close()
        self.archive.close()


def _bound(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket; a bind failure names the port.

    Its connections inherit ``TCP_NODELAY``: uvicorn writes a response's head and body
    separately, and without it the body waits for the client's delayed ACK (40 ms on
    every response of a reused connection).
    """
    try:
        listener = socket.create_server((host, port), backlog=128)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(f"{what} {host}:{port}: {reason}") from exc
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def _http_host(settings: Settings) -> str:
    """Where the HTTP door listens: an archive without authentication hands patient data
    to anyone who can reach it, so then only this machine may."""
    address = settings.http_bind_address
    if settings.http_auth != "none" or _is_loopback(address):
        return address
    return "127.0.0.1"


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
