"""Serving C-FIND: our answers, sent with a lean path for the pending responses.

pynetdicom builds, validates and encodes a primitive and a command set for every
pending response, and formats the identifier for its debug log: most of the cost of
a C-FIND that matches hundreds of studies. The pending command set of one request is
the same for every match, so here it is encoded once, and each match goes out as a
single P-DATA with the command and the identifier in two PDVs. The final response,
and an answer too big for one PDU, take pynetdicom's usual path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom import Dataset
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import ServiceClass

from pacsnode.dimse import services

log = logging.getLogger("pacsnode.find")

PENDING = (0xFF00, 0xFF01)
UNABLE_TO_PROCESS = 0xC000
_PDU_OVERHEAD = 6 + 2 * 6  # P-DATA-TF header, and two PDV item headers
_QUEUED_ANSWERS = 4


@dataclass
class FindRequest:
    """What a C-FIND answerer needs of the request: as pynetdicom's event offers it."""

    identifier: Dataset
    request: C_FIND
    assoc: Association
    cancelled: Callable[[], bool]

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled()


Answers = Callable[[Any], Iterator[tuple[int | Dataset, Dataset | None]]]


class _Sender:
    """The responses to one C-FIND request."""

    def __init__(self, service: ServiceClass, request: C_FIND, context: PresentationContext):
        self.service = service
        self.request = request
        self.context_id = int(context.context_id or 0)
        self.syntax = context.transfer_syntax[0]
        self._commands: dict[int, bytes] = {}
        self.max_pdu = int(service.dimse.maximum_pdu_size or 0)

    def _response(self, status: int | Dataset) -> C_FIND:
        response = C_FIND()
        response.MessageIDBeingRespondedTo = self.request.MessageID
        response.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        if isinstance(status, Dataset):
            response.Status = int(status.Status)
            if "ErrorComment" in status:
                response.ErrorComment = str(status.ErrorComment)  # type: ignore[assignment]
        else:
            response.Status = status
        return response

    def _command(self, status: int) -> bytes:
        """The encoded command set of a pending response, the same for every match."""
        if status not in self._commands:
            response = self._response(status)
            response.Identifier = BytesIO(b"\0")  # says "a data set follows"
            message = C_FIND_RSP()
            message.primitive_to_message(response)
            self._commands[status] = bytes(encode(message.command_set, True, True) or b"")
        return self._commands[status]

    def pending(self, status: int, identifier: Dataset) -> None:
        syntax = self.syntax
        encoded = encode(
            identifier, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated
        )
        if encoded is None:
            raise ValueError("the answer does not encode")
        command = self._command(status)
        if self.max_pdu and len(command) + len(encoded) + _PDU_OVERHEAD > self.max_pdu:
            response = self._response(status)
            response.Identifier = BytesIO(encoded)
            self.service.dimse.send_msg(response, self.context_id)
            return
        self._wait_for_room()
        message = P_DATA()
        pdvs = message.presentation_data_value_list
        pdvs.append((self.context_id, b"\x03" + command))  # the last (only) command fragment
        pdvs.append((self.context_id, b"\x02" + encoded))  # the last (only) data set fragment
        self.service.dimse.dul.send_pdu(message)

    def _wait_for_room(self) -> None:
        """Keep at most a few answers queued for the network.

        Matches are read faster than they are sent: without a bound, a query matching
        a million instances would queue them all in memory, and a C-CANCEL would only
        be read once all had gone, as the DUL thread sends whatever is queued first.
        """
        queued = self.service.dimse.dul.to_provider_queue
        while len(queued.queue) >= _QUEUED_ANSWERS and self.service.assoc.is_established:
            time.sleep(0.0002)

    def final(self, status: int | Dataset) -> None:
        self.service.dimse.send_msg(self._response(status), self.context_id)


def serve(
    service: ServiceClass, request: C_FIND, context: PresentationContext, answers: Answers
) -> None:
    sender = _Sender(service, request, context)
    syntax = context.transfer_syntax[0]
    try:
        identifier = decode(
            request.Identifier,  # type: ignore[arg-type]
            syntax.is_implicit_VR,
            syntax.is_little_endian,
            syntax.is_deflated,
        )
    except Exception as exc:
        log.warning("C-FIND identifier does not decode: %s", exc)
        failure = Dataset()
        failure.Status = UNABLE_TO_PROCESS
        failure.ErrorComment = "identifier does not decode"
        sender.final(failure)
        return
    message_id = int(request.MessageID or 0)
    found = FindRequest(
        identifier, request, service.assoc, lambda: service.is_cancelled(message_id)
    )
    try:
        for status, answer in answers(found):
            code = int(status.Status) if isinstance(status, Dataset) else status
            if code in PENDING and answer is not None:
                sender.pending(code, answer)
            else:
                sender.final(status)
                return
    except Exception as exc:  # a bug must still end the query for the peer
        log.exception("C-FIND failed")
        failure = Dataset()
        failure.Status = UNABLE_TO_PROCESS
        failure.ErrorComment = f"processing failure: {exc}"[:64]
        sender.final(failure)


def install(answers: Answers, sop_classes: list[str]) -> None:
    """Serve C-FIND of these SOP classes with ``answers``; the rest as before."""

    class FindService(ServiceClass):
        def SCP(self, req: Any, context: PresentationContext) -> None:
            if not isinstance(req, C_FIND):
                raise NotImplementedError(f"{type(req).__name__} on a C-FIND SOP class")
            serve(self, req, context, answers)

    services.override(sop_classes, FindService)
