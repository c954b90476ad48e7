"""Receiving an object: the one entry every door uses (C-STORE, C-GET, STOW-RS, import).

:meth:`Receiving.receive` applies the sender's duplicate policy, coercion and issuer
(archive/coercion.py, archive/authorities.py), hands the file to ingest, and tells
whoever listens (routing) what arrived, so that an object behaves the same whichever
door it came through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pacsnode.archive.ingest import IngestResult, Received, storage_failure

if TYPE_CHECKING:
    from pacsnode.archive.core import Archive

log = logging.getLogger("pacsnode.archive")


@dataclass(frozen=True)
class Origin:
    """Where an object comes from."""

    door: str
    """"C-STORE", "C-GET", "STOW-RS" or "import"."""
    source_ae: str = ""
    """The calling AE of a C-STORE, the remote of a C-GET; empty over HTTP and import."""
    called_ae: str = ""


Listener = Callable[[IngestResult, Origin], None]


class Receiving:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Be told of every object received (whatever its outcome)."""
        self._listeners.append(listener)

    def receive(self, received: Received, origin: Origin) -> IngestResult:
        source = origin.source_ae.strip()
        policy = (
            self.archive.remotes.duplicate_policy_for(source)
            if source
            else self.archive.settings.duplicate_policy
        )
        result = self.archive.ingest(
            replace(
                received,
                source_ae=source or None,
                duplicate_policy=policy,
                coercion=self.archive.coercions.on_receive(source or None),
                authority=self.archive.issuers.of_sender(source),
            )
        )
        for listener in self._listeners:
            try:
                listener(result, origin)
            except Exception:  # what follows a receipt never costs the receipt
                log.exception("after receiving %s", result.sop_instance_uid)
        return result

    @staticmethod
    def spool_failed(error: OSError) -> IngestResult:
        """The answer for a data set that could not even be spooled."""
        return storage_failure(error)
