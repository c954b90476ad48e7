"""Where the probed node sends what the doctor asks of it: the C-STOREs of a C-MOVE to
our AE title, and a storage commitment report on a new association.

A DIMSE server of our own on our DICOM port (the address the node should have for
us), open to anyone, that keeps nothing: an object is acknowledged and dropped, and
who sent it from where is noted. When the port is taken (our server runs), the
doctor says so and infers what it can from the node's answers.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass

from pacsnode import status
from pacsnode.config import Settings
from pacsnode.dimse import codec
from pacsnode.dimse.access import OpenAccess
from pacsnode.dimse.commitment import CommitmentReport
from pacsnode.dimse.nservices import answer_event_report
from pacsnode.dimse.requests import Request, Session
from pacsnode.dimse.server import IDENTITY, DimseServer
from pacsnode.dimse.storage import Discard
from pacsnode.net import commands
from pacsnode.net.association import Context, Sink


@dataclass(frozen=True)
class Arrival:
    sop_instance_uid: str
    calling_ae: str
    address: str


class Listener:
    def __init__(self, settings: Settings, port: int) -> None:
        self.port = port
        self.arrivals: list[Arrival] = []
        self._arrived = threading.Condition()
        self._reports: queue.Queue[CommitmentReport] = queue.Queue()
        self.server = DimseServer(settings, OpenAccess(), IDENTITY)
        self.server.handlers[commands.C_STORE_RQ] = self._stored
        self.server.handlers[commands.N_EVENT_REPORT_RQ] = self._report
        self.server.sink_factory = self._sink
        self._socket = socket.create_server(("0.0.0.0", port))
        self.server.listen(self._socket)

    @staticmethod
    def _sink(session: Session, command: dict[str, object], context: Context) -> Sink | None:
        """A C-STORE's data set is dropped as it arrives; a report's is read."""
        return Discard() if command.get("CommandField") == commands.C_STORE_RQ else None

    def _stored(self, request: Request) -> None:
        """Noted before it is answered: by the time the node sends its final C-MOVE
        response, what it sent us is here."""
        arrival = Arrival(
            str(request.command.get("AffectedSOPInstanceUID", "")),
            request.session.calling_ae,
            request.association.peer_address[0],
        )
        with self._arrived:
            self.arrivals.append(arrival)
            self._arrived.notify_all()
        request.respond(status.SUCCESS)

    def _report(self, request: Request) -> None:
        message = request.message
        information = codec.decode(message.data or b"", request.syntax)
        answer_event_report(request.association, message, status.SUCCESS)
        event_type = int(request.command.get("EventTypeID", 0))
        self._reports.put(CommitmentReport(event_type, information))

    def wait_for(self, count: int, timeout: float) -> list[Arrival]:
        """The arrivals once there are ``count`` of them, or after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            self._arrived.wait_for(
                lambda: len(self.arrivals) >= count, max(0.0, deadline - time.monotonic())
            )
            return list(self.arrivals)

    def report(self, timeout: float) -> CommitmentReport | None:
        try:
            return self._reports.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Free the port at once: shut down, a listening socket wakes its accept."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self.server.stop()
