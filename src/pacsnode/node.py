"""Everything ``pacsnode serve`` runs: the archive, its job workers and the servers.

Start order: the index first (migrations, interrupted jobs), then the workers that
send what is queued, then the doors. Stop order is the reverse, so that what the
doors accept still reaches the index and the queue.
"""

from __future__ import annotations

import ipaddress
import logging

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.metadata import MetadataWarmer
from pacsnode.archive.routing import Router
from pacsnode.archive.sending import STORE_JOB
from pacsnode.archive.worklist import Worklist
from pacsnode.config import Settings
from pacsnode.dimse import tls
from pacsnode.dimse.prefetch import Prefetcher, on_scheduled
from pacsnode.dimse.print_jobs import PrintJobs
from pacsnode.dimse.retrieve_scu import Retriever
from pacsnode.dimse.route_sender import RouteSender
from pacsnode.dimse.server import DimseServer
from pacsnode.hl7.listener import OrderListener
from pacsnode.jobs.queue import JobQueue
from pacsnode.jobs.workers import Workers
from pacsnode.web.app import create_app
from pacsnode.web.server import HttpServer

log = logging.getLogger("pacsnode")


class Node:
    def __init__(self, settings: Settings, archive: Archive) -> None:
        """``archive`` is the one ``settings`` name, opened by the caller (which says
        which one it is, and refuses to make one where none was asked for)."""
        self.settings = settings
        self.archive = archive
        tls.install_outbound(settings, self.archive.remotes.get)
        self.jobs = JobQueue(
            self.archive.database, settings.job_max_attempts, settings.job_retry_delay
        )
        self.workers = Workers(self.jobs, settings.job_workers)
        Retriever(self.archive, self.workers)  # runs retrieve jobs
        PrintJobs(self.archive, self.workers)  # runs print jobs
        self.router = Router(self.archive, self.workers)
        sender = RouteSender(self.archive, self.workers)  # runs the jobs the router queues
        self.workers.register(STORE_JOB, sender.send)  # and the sends asked for over REST
        Prefetcher(self.archive, self.workers)  # runs prefetch jobs
        self.warmer = MetadataWarmer(self.archive.metadata)
        self.dimse = DimseServer(settings, self.archive, self.workers, self.router)
        self.orders = (
            OrderListener(
                Worklist(
                    self.archive.database,
                    settings.worklist_hide_finished,
                    on_scheduled(self.jobs, settings),
                ),
                settings.bind_address,
                settings.hl7_port,
            )
            if settings.hl7_port
            else None
        )
        self.http = (
            HttpServer(
                create_app(self.archive, self.workers, self.router),
                _http_host(settings),
                settings.http_port,
                tls.https_context(settings),
            )
            if settings.http_port
            else None
        )

    def start(self) -> None:
        audit.configure(self.settings, self.archive.database)
        removed = self.archive.storage.clean_partial_files()
        if removed:
            log.info("removed %d partial files left by an interrupted run", removed)
        self.workers.start()
        self.warmer.start()
        try:
            self.dimse.start()
            if self.http is not None:
                self.http.start()
            if self.orders is not None:
                self.orders.start()
        except OSError:  # a port in use: what did start stops again
            self.stop()
            raise
        audit.application_started()

    def stop(self) -> None:
        if self.orders is not None:
            self.orders.stop()
        if self.http is not None:
            self.http.stop()
        self.dimse.stop()
        self.warmer.stop()
        self.workers.stop()
        audit.application_stopped()
        audit.close()
        self.archive.close()


def _http_host(settings: Settings) -> str:
    """Where the HTTP door listens: an archive without authentication hands patient data
    to anyone who can reach it, so then only this machine may."""
    address = settings.http_bind_address
    if settings.http_auth != "none" or _is_loopback(address):
        return address
    log.warning(
        'http_auth is "none": the HTTP server listens on 127.0.0.1 only, not on %s; '
        'set http_auth to "basic" or "oauth2" to serve other machines',
        address,
    )
    return "127.0.0.1"


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
