"""The nodes serving one index, each known by a heartbeat row it writes while it runs.

A node's primary process writes its row every :data:`HEARTBEAT` seconds, with the
associations the node serves at that moment; a node whose row is older than
:data:`LIVE` seconds is gone (stopped, killed, or cut off from the database). A node
that stops says so at once. ``GET /api/cluster`` lists the live ones. A single node
writes its row too, under its host's name.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pacsnode import __version__
from pacsnode.archive.database import Database, aware, now
from pacsnode.archive.schema import cluster_node
from pacsnode.config import Settings

log = logging.getLogger("pacsnode.cluster")

HEARTBEAT = 2.0
"""Seconds between a node's heartbeats."""
LIVE = 10.0
"""Seconds after its last heartbeat that a node still counts as live."""


@dataclass(frozen=True)
class NodeState:
    name: str
    version: str
    host: str
    dicom_port: int
    http_port: int
    associations: int
    started_at: datetime
    heartbeat_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "host": self.host,
            "dicom_port": self.dicom_port,
            "http_port": self.http_port,
            "associations": self.associations,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
        }


class Nodes:
    def __init__(self, database: Database) -> None:
        self.database = database

    def beat(self, values: dict[str, Any]) -> None:
        """Write a node's row: made on its first heartbeat, refreshed on the others."""
        dialect = postgresql if self.database.writer.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(cluster_node).values(**values)
        changes = {key: insert.excluded[key] for key in values if key != "name"}
        with self.database.writer.begin() as connection:
            connection.execute(insert.on_conflict_do_update(index_elements=["name"], set_=changes))

    def left(self, name: str) -> None:
        """A node that stops is gone now, not once its heartbeat is old."""
        with self.database.writer.begin() as connection:
            connection.execute(
                sa.update(cluster_node)
                .where(cluster_node.c.name == name)
                .values(stopped_at=now(), associations=0)
            )

    def live(self) -> list[NodeState]:
        """The nodes whose last heartbeat is recent, by name."""
        since = now() - timedelta(seconds=LIVE)
        query = (
            sa.select(cluster_node)
            .where(cluster_node.c.heartbeat_at >= since, cluster_node.c.stopped_at.is_(None))
            .order_by(cluster_node.c.name)
        )
        with self.database.reader.connect() as connection:
            rows = connection.execute(query).all()
        return [
            NodeState(
                row.name,
                row.version,
                row.host,
                row.dicom_port,
                row.http_port,
                row.associations,
                aware(row.started_at),
                aware(row.heartbeat_at),
            )
            for row in rows
        ]


class Heartbeat:
    """The thread that keeps this node's row fresh; ``associations`` counts the
    associations of the whole node (all its worker processes)."""

    def __init__(self, nodes: Nodes, settings: Settings, associations: Callable[[], int]) -> None:
        self.nodes = nodes
        self.associations = associations
        self.name = settings.node_name
        self._fixed = {
            "name": self.name,
            "version": __version__,
            "host": socket.gethostname(),
            "dicom_port": settings.dicom_port,
            "http_port": settings.http_port,
            "started_at": now(),
            "stopped_at": None,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()  # listed as soon as it serves
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return  # never started: the node did not come up
        self._stop.set()
        self._thread.join(10)
        try:
            self.nodes.left(self.name)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot record that node %s stopped: %s", self.name, exc)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self._beat()
            except sa.exc.SQLAlchemyError as exc:  # the index is away: beat again later
                log.warning("node %s heartbeat not written: %s", self.name, exc)

    def _beat(self) -> None:
        self.nodes.beat(
            {
                **self._fixed,
                "associations": self.associations(),
                "heartbeat_at": now(),
            }
        )
