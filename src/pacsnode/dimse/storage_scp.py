"""The C-STORE door: hand each received data set to the archive's ingest."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import cast
from weakref import WeakKeyDictionary

from pydicom import Dataset
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import IngestResult, Outcome, Prepared, Received, storage_failure
from pacsnode.archive.routing import Router
from pacsnode.dimse import spool

log = logging.getLogger("pacsnode.store")

_RECEIVED = (Outcome.STORED, Outcome.REPLACED, Outcome.DUPLICATE)


def _request(event: Event) -> C_STORE:
    return cast(C_STORE, event.request)


class InFlight:
    """Counts C-STOREs being ingested, so that shutdown can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *_exc: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class StorageSCP:
    def __init__(self, archive: Archive, router: Router | None = None) -> None:
        self.archive = archive
        self.router = router
        self.in_flight = InFlight()
        self.outcomes: WeakKeyDictionary[Association, Counter[str]] = WeakKeyDictionary()
        self.received: WeakKeyDictionary[Association, list[str]] = WeakKeyDictionary()
        """SOP Instance UIDs the archive holds from each association, for its audit."""

    def handle_store(self, event: Event) -> Dataset:
        with self.in_flight:
            result = self._ingest(event)
            if self.router is not None:
                self.router.arrived(
                    result, event.assoc.requestor.ae_title, event.assoc.acceptor.ae_title
                )
        self.outcomes.setdefault(event.assoc, Counter())[result.outcome] += 1
        if result.outcome in _RECEIVED:
            uid = result.sop_instance_uid or str(_request(event).AffectedSOPInstanceUID)
            self.received.setdefault(event.assoc, []).append(uid)
        if not result.ok:
            log.warning(
                "C-STORE %s from %s: status 0x%04X %s",
                _request(event).AffectedSOPInstanceUID,
                event.assoc.requestor.ae_title,
                result.status,
                result.comment,
            )
        response = Dataset()
        response.Status = result.status
        if result.comment:
            response.ErrorComment = result.comment[:64]
        return response

    def _ingest(self, event: Event) -> IngestResult:
        calling_ae = event.assoc.requestor.ae_title
        request = _request(event)
        spooled = spool.spooled(event.dataset_path)
        prepared = None
        if spooled is not None:
            spooled.flush()
            if spooled.error is not None:
                log.error("cannot spool a received data set: %s", spooled.error)
                return storage_failure(spooled.error)
            prepared = Prepared(
                str(request.AffectedSOPClassUID),
                str(request.AffectedSOPInstanceUID),
                spooled.size,
                spooled.checksum,
            )
        return self.archive.ingest(
            Received(
                path=event.dataset_path,
                source_ae=calling_ae,
                transfer_syntax=event.context.transfer_syntax,
                expected_sop_class=request.AffectedSOPClassUID,
                expected_sop_instance=request.AffectedSOPInstanceUID,
                duplicate_policy=self.archive.remotes.duplicate_policy_for(calling_ae),
                prepared=prepared,
            )
        )

    def audit(self, assoc: Association) -> None:
        """One audit message per association for what it sent us (PS3.15 A.5.3.6);
        call it before :meth:`summary`, which forgets the counts."""
        counts = self.outcomes.get(assoc, Counter())
        failed = counts[Outcome.FAILED] + counts[Outcome.REFUSED]
        received = self.received.pop(assoc, [])
        audit.instances_stored(audit.requestor_of(assoc), received, failed=failed)

    def summary(self, assoc: Association) -> str:
        counts = self.outcomes.pop(assoc, Counter())
        if not counts:
            return ""
        return ", ".join(f"{counts[o]} {o.value}" for o in Outcome if counts[o])
