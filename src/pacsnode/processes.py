"""Worker processes: several processes serve one node's ports together.

The parent binds the ports (DIMSE, DICOM TLS, HTTP), prepares the node once (index
migrations, what an interrupted run left behind) and starts ``workers`` processes.
Each runs a whole :class:`~pacsnode.node.Node` on the inherited listening sockets; the
kernel hands each new connection to one of the workers waiting to accept. Workers are
started fresh (``spawn``), not forked, so none inherits the parent's threads or
database connections.

Workers log through the parent (a queue of records), so that one process writes the
log file and rotates it. The parent only watches. A worker that dies (``kill -9``) is
replaced at once; its spool directory is emptied and its association places given
back, and its jobs are taken over by the others when their leases lapse. Nothing it
acknowledged is lost: a C-STORE is answered only once its file and index row are
durable. SIGTERM is passed to every worker, which drains as a single process does.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import logging.handlers
import multiprocessing
import os
import queue
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from pacsnode.archive.storage import Storage
from pacsnode.config import Settings
from pacsnode.dimse.slots import AssociationSlots

if TYPE_CHECKING:
    from pacsnode.node import Listeners

log = logging.getLogger("pacsnode")

_RESTART_PAUSE = 1.0
"""Seconds between replacing a worker and replacing it again, should it keep dying."""


def default_workers(settings: Settings) -> int:
    return settings.workers or os.cpu_count() or 1


class Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.context = multiprocessing.get_context("spawn")
        self.slots = AssociationSlots(settings.max_associations, count, self.context)
        self.ready = self.context.Queue()
        self.log_records = self.context.Queue()
        self.processes: dict[int, BaseProcess] = {}

    def run(self, stop: threading.Event) -> None:
        """Start the workers, keep them running until ``stop``, then stop them."""
        from pacsnode.archive.core import Archive
        from pacsnode.node import Node, bind

        listeners = bind(self.settings)
        node = Node(self.settings, Archive(self.settings))  # clean-up, once, before any worker
        node.prepare()
        node.archive.close()
        handlers = logging.getLogger().handlers
        writer = logging.handlers.QueueListener(
            self.log_records, *handlers, respect_handler_level=True
        )
        writer.start()
        try:
            self._serve(stop, listeners)
        finally:
            writer.stop()

    def _serve(self, stop: threading.Event, listeners: Listeners) -> None:
        from pacsnode.node import close_listeners

        for worker in range(self.count):
            self._start(worker, listeners)
        try:
            self._wait_ready(set(self.processes))
        except OSError:
            self._stop_all()
            raise
        log.info(
            "pacsnode ready with %d worker processes (data in %s)",
            self.count,
            self.settings.data_dir.resolve(),
        )
        while not stop.wait(0.2):
            for worker, process in list(self.processes.items()):
                if not process.is_alive():
                    self._replace(worker, process, listeners)
        log.info("shutting down")
        close_listeners(listeners)
        self._stop_all()

    def _start(self, worker: int, listeners: Any) -> None:
        process = self.context.Process(
            target=serve_worker,
            args=(
                self.settings,
                worker,
                listeners,
                self.slots,
                self.ready,
                self.log_records,
                os.getpid(),
            ),
            name=f"pacsnode-worker-{worker}",
            daemon=False,
        )
        process.start()
        self.processes[worker] = process

    def _wait_ready(self, waiting: set[int]) -> None:
        """Until these workers serve; raises if one exits first."""
        while waiting:
            with contextlib.suppress(queue.Empty):
                worker, pid = self.ready.get(timeout=0.2)
                waiting.discard(worker)
                log.info("worker %d (pid %d) serving", worker, pid)
            for worker in waiting:
                process = self.processes[worker]
                if not process.is_alive():
                    raise OSError(f"worker {worker} exited as it started ({process.exitcode})")

    def _replace(self, worker: int, process: BaseProcess, listeners: Any) -> None:
        pid = process.pid or 0
        log.error(
            "worker %d (pid %d) died with exit code %s; replacing it", worker, pid, process.exitcode
        )
        self.slots.forget(worker)

        Storage.of(self.settings).clean_spool_of(pid)
        time.sleep(_RESTART_PAUSE)
        self._start(worker, listeners)
        try:
            self._wait_ready({worker})
        except OSError as exc:
            log.error("worker %d not replaced: %s", worker, exc)

    def _stop_all(self) -> None:
        for process in self.processes.values():
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 2 * self.settings.shutdown_grace + 15
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)


def serve_worker(
    settings: Settings,
    worker: int,
    listeners: Any,
    slots: AssociationSlots,
    ready: Any,
    log_records: Any,
    parent: int,
) -> None:
    """A worker process: one Node on the parent's sockets, until SIGTERM or until the
    parent is gone."""
    _die_with(parent)
    from pacsnode.archive.core import Archive
    from pacsnode.logs import configure_logging
    from pacsnode.node import Node

    to_parent = logging.handlers.QueueHandler(log_records)
    to_parent.setFormatter(logging.Formatter("%(message)s"))  # the parent's handlers format
    configure_logging(settings.log_level, [to_parent])
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    slots.worker = worker
    node = Node(settings, Archive(settings), slots, primary=worker == 0)
    node.start(listeners)
    ready.put((worker, os.getpid()))
    stop.wait()
    node.stop()


def _die_with(parent: int) -> None:
    """Be killed when the parent dies, even by SIGKILL: no orphan keeps serving."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)
