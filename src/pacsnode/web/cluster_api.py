"""``GET /api/cluster``: the nodes serving this index, as their heartbeats say."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode.archive.core import Archive
from pacsnode.archive.nodes import LIVE, Nodes


class ClusterApi:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.nodes = Nodes(archive.database)

    def index(self, _request: Request) -> JSONResponse:
        """The live nodes (a heartbeat within the last seconds): name, version, ports,
        associations served now, last heartbeat; and which node answered."""
        return JSONResponse(
            {
                "node": self.archive.settings.node_name,
                "cluster": self.archive.settings.cluster is not None,
                "live_seconds": LIVE,
                "nodes": [node.as_json() for node in self.nodes.live()],
            }
        )

    def routes(self) -> list[Route]:
        return [Route("/cluster", self.index, methods=["GET"])]
