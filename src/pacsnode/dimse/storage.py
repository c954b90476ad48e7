"""The C-STORE door: data sets spooled as they arrive, then received by the archive.

Each C-STORE's data set is written, fragment by fragment, into a spool file that
already has our File Meta (with the sender's AE title) and is hashed on the way, so
the archive only has to fsync and rename it into storage: no second copy, no File
Meta built by a general writer. A write error (a full disk) is recorded, not raised:
raised, it would abort the association; recorded, the C-STORE is answered with the
archive's status and the association goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from pacsnode import status
from pacsnode.archive.checksums import Checksum
from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import IngestResult, Outcome, Prepared, Received
from pacsnode.archive.receiving import Origin
from pacsnode.archive.storage import file_meta
from pacsnode.dimse.requests import Request, Session
from pacsnode.net import commands
from pacsnode.net.association import Context, Sink

log = logging.getLogger("pacsnode.store")

_RECEIVED = (Outcome.STORED, Outcome.REPLACED, Outcome.DUPLICATE)


class SpoolFile:
    """A received data set on its way into storage: our File Meta, then its bytes."""

    def __init__(
        self,
        directory: Path,
        sop_class: str,
        sop_instance: str,
        syntax: str,
        source_ae: str,
        sync_and_close: Callable[[int], Future[None] | None] = os.close,
    ) -> None:
        self.path = directory / f"{secrets.token_hex(8)}.dcm"
        self._sync_and_close = sync_and_close
        """What takes the descriptor of a complete file: the storage's early fsync."""
        self.synced: Future[None] | None = None
        self.sop_class = sop_class
        self.sop_instance = sop_instance
        self.syntax = syntax
        self.error: OSError | None = None
        self.size = 0
        self._checksum = Checksum()
        self._fd: int | None = None
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:  # a read-only or vanished spool: answered, never raised
            self.error = exc
            self.created = False
            return
        self.created = True
        self._write(file_meta(sop_class, sop_instance, syntax, source_ae))

    @property
    def checksum(self) -> str:
        return self._checksum.text()

    def prepared(self) -> Prepared:
        """What the archive needs to adopt the finished file as it is."""
        return Prepared(self.sop_class, self.sop_instance, self.size, self.checksum, self.synced)

    def write(self, fragment: memoryview) -> None:
        self._write(fragment)

    def _write(self, data: bytes | memoryview) -> None:
        if self.error is not None or self._fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.error = exc
            with contextlib.suppress(OSError):  # give the space back; the data is lost
                os.ftruncate(self._fd, 0)
            return
        self._checksum.update(data)
        self.size += len(data)

    def finish(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self.error is None:
            self.synced = self._sync_and_close(fd)
        else:
            os.close(fd)

    def abandon(self) -> None:
        self.finish()
        if not self.created:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:  # a spool that turned read-only: start-up clears it
            log.warning("cannot remove the spool file %s: %s", self.path, exc.strerror)


class Discard:
    """Where the data set of a refused C-STORE goes."""

    def write(self, fragment: memoryview) -> None:
        pass

    def finish(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class StorageService:
    def __init__(self, archive: Archive, spool: Path) -> None:
        self.archive = archive
        self.spool = spool

    def sink_for(
        self, session: Session, command: dict[str, object], context: Context
    ) -> Sink | None:
        if command.get("CommandField") != commands.C_STORE_RQ:
            return None
        if "store" not in session.services:
            return Discard()
        return SpoolFile(
            self.spool,
            str(command.get("AffectedSOPClassUID", "")),
            str(command.get("AffectedSOPInstanceUID", "")),
            context.transfer_syntax,
            session.calling_ae,
            self.archive.storage.sync_and_close,
        )

    def handle(self, request: Request) -> None:
        sink = request.message.sink
        if not isinstance(sink, SpoolFile):
            request.respond(status.CANNOT_UNDERSTAND, "no data set")
            return
        try:
            result = self._receive(request, sink)
        finally:
            sink.abandon()  # gone already if the archive adopted it
        session = request.session
        session.outcomes[result.outcome] += 1
        if result.outcome in _RECEIVED:
            session.stored.append(result.sop_instance_uid or sink.sop_instance)
        if not result.ok:
            log.warning(
                "C-STORE %s from %s: status 0x%04X %s",
                sink.sop_instance,
                session.calling_ae,
                result.status,
                result.comment,
            )
        request.respond(result.status, result.comment)

    def _receive(self, request: Request, sink: SpoolFile) -> IngestResult:
        if sink.error is not None:  # logged as the failure is answered
            return self.archive.receiving.spool_failed(sink.error)
        association = request.association
        received = Received(
            path=sink.path,
            transfer_syntax=sink.syntax,
            expected_sop_class=sink.sop_class,
            expected_sop_instance=sink.sop_instance,
            prepared=sink.prepared(),
        )
        origin = Origin("C-STORE", association.calling_ae, association.called_ae)
        return self.archive.receive(received, origin)
