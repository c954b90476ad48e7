"""How many associations a node serves, counted across all its worker processes.

``max_associations`` is a limit of the node, not of one process: the counts live in
shared memory made before the workers start, one per worker, so that every worker
takes places from the same total, and the places of a worker that died (``kill -9``)
are given back by zeroing its count. Only associations that asked (an A-ASSOCIATE-RQ
arrived) count: a silent connection, a port scan, takes no place.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any


class AssociationSlots:
    def __init__(self, limit: int, workers: int = 1, context: Any = None) -> None:
        self.limit = limit
        self.worker = 0
        """Whose count this process changes: its worker number."""
        self._counts: SynchronizedArray[Any] = (context or multiprocessing).Array("i", workers)
        self._connections: SynchronizedArray[Any] = (context or multiprocessing).Array("i", workers)
        """Open connections per worker, associated or not yet: what spreads new ones."""

    def take(self) -> bool:
        """Take a place for a new association; False when all are taken."""
        with self._counts.get_lock():
            if sum(self.counts()) >= self.limit:
                return False
            self._counts[self.worker] += 1
            return True

    def give_back(self) -> None:
        with self._counts.get_lock():
            self._counts[self.worker] = max(0, self._counts[self.worker] - 1)

    @property
    def count(self) -> int:
        return sum(self.counts())

    def forget(self, worker: int) -> None:
        """A worker died: its associations died with it."""
        with self._counts.get_lock():
            self._counts[worker] = 0
        with self._connections.get_lock():
            self._connections[worker] = 0

    def connected(self) -> None:
        with self._connections.get_lock():
            self._connections[self.worker] += 1

    def disconnected(self) -> None:
        with self._connections.get_lock():
            self._connections[self.worker] = max(0, self._connections[self.worker] - 1)

    def lead(self) -> int:
        """How many more connections this worker serves than the least busy one."""
        with self._connections.get_lock():
            counts = [int(self._connections[worker]) for worker in range(len(self._connections))]
        return counts[self.worker] - min(counts)

    def counts(self) -> list[int]:
        """How many associations each worker serves now."""
        return [int(self._counts[worker]) for worker in range(len(self._counts))]
