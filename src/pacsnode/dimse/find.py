"""The C-FIND door: Query/Retrieve and Modality Worklist queries, answered in a stream.

An answerer (:mod:`~pacsnode.dimse.find_scp`, :mod:`~pacsnode.dimse.worklist_scp`,
wrapped by C-FIND spanning when that is on) yields :class:`Answer` s; each pending one
goes out as it is made, so a query matching a million instances never waits in
memory, and a C-CANCEL is looked for between them. The pending command set is the
same for every match of a request, so it is encoded once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydicom import Dataset

from pacsnode import audit, status
from pacsnode.dimse import codec
from pacsnode.dimse.catalog import MODALITY_WORKLIST_FIND
from pacsnode.dimse.flat import Encoded
from pacsnode.dimse.requests import Request
from pacsnode.net import commands
from pacsnode.net.association import Association

log = logging.getLogger("pacsnode.find")


@dataclass(frozen=True)
class Answer:
    status: int
    identifier: Dataset | Encoded | None = None
    comment: str = ""

    @property
    def pending(self) -> bool:
        return status.category(self.status) is status.Category.PENDING


@dataclass
class FindRequest:
    """What an answerer needs of a C-FIND: its identifier, model and requestor."""

    identifier: Dataset
    model: str
    association: Association
    syntax: str
    cancelled: Callable[[], bool]

    @property
    def calling_ae(self) -> str:
        return self.association.calling_ae


Answerer = Callable[[FindRequest], Iterator[Answer]]


class FindService:
    def __init__(self, query: Answerer, worklist: Answerer) -> None:
        self.query = query
        self.worklist = worklist

    def handle(self, request: Request) -> None:
        try:
            identifier = request.dataset()
        except codec.DecodeError as exc:
            log.warning(
                "C-FIND identifier from %s does not decode: %s", request.session.calling_ae, exc
            )
            request.respond(status.UNABLE_TO_PROCESS, "identifier does not decode")
            return
        model = request.sop_class
        audit.query(
            request.session.actor, model, bytes(request.message.data or b""), request.syntax
        )
        found = FindRequest(
            identifier, model, request.association, request.syntax, request.cancelled
        )
        answerer = self.worklist if model == MODALITY_WORKLIST_FIND else self.query
        _Responder(request).send_all(answerer(found))


class _Responder:
    def __init__(self, request: Request) -> None:
        self.request = request
        self._pending: dict[int, bytes] = {}

    def send_all(self, answers: Iterator[Answer]) -> None:
        try:
            for answer in answers:
                if answer.pending and answer.identifier is not None:
                    self._pending_answer(answer.status, answer.identifier)
                else:
                    self.request.respond(answer.status, answer.comment)
                    return
        except (ConnectionError, OSError):
            raise
        except Exception as exc:  # a bug must still end the query for the peer
            log.exception("C-FIND failed")
            self.request.respond(status.UNABLE_TO_PROCESS, f"processing failure: {exc}")
            return
        self.request.respond(status.SUCCESS)

    def _pending_answer(self, code: int, identifier: Dataset | Encoded) -> None:
        encoded = self._pending.get(code)
        if encoded is None:
            command = self.request.response(code)
            command["CommandDataSetType"] = commands.HAS_DATA_SET
            encoded = self._pending[code] = commands.encode(command)
        if isinstance(identifier, Encoded):
            data = identifier.data
        else:
            data = self.request.encode(identifier)
        self.request.association.send_encoded(self.request.context.id, encoded, data)
