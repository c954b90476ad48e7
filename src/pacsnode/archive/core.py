"""The archive as one object: index, storage and ingest behind the network doors."""

from __future__ import annotations

from pacsnode.archive.database import Database, migrate, open_database
from pacsnode.archive.index import Index
from pacsnode.archive.ingest import (
    CANNOT_UNDERSTAND,
    REJECTED_WARNING,
    Ingest,
    IngestResult,
    Received,
)
from pacsnode.archive.metadata import MetadataCache
from pacsnode.archive.receiving import Origin, Receiving
from pacsnode.archive.remotes import Remotes
from pacsnode.archive.storage import Storage
from pacsnode.config import Settings


class Archive:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database: Database = open_database(settings.resolved_database_url)
        migrate(self.database.writer)
        self.storage = Storage(settings.data_dir)
        self.index = Index(self.database)
        warn = settings.rejected_store_answer == "warning"
        self.ingest = Ingest(
            self.storage, self.index, REJECTED_WARNING if warn else CANNOT_UNDERSTAND
        )
        self.rejections = self.ingest.rejections
        self.metadata = MetadataCache(self.database, self.storage)
        self.remotes = Remotes(settings, self.database)
        self.receiving = Receiving(self)

    def receive(self, received: Received, origin: Origin) -> IngestResult:
        """Take in an object from any door (see :mod:`pacsnode.archive.receiving`)."""
        return self.receiving.receive(received, origin)

    def close(self) -> None:
        self.database.dispose()
