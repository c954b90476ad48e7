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
from pacsnode.net.transport import Buffer

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
    slow: bool = False
    """Answers come from other archives (C-FIND spanning), each in its own time: sent
    as each is ready, none held for the next."""

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
        request.session.queries += 1
        audit.query(
            request.session.actor, model, bytes(request.message.data or b""), request.syntax
        )
        found = FindRequest(
            identifier, model, request.association, request.syntax, request.cancelled
        )
        answerer = self.worklist if model == MODALITY_WORKLIST_FIND else self.query
        answers = answerer(found)
        _Responder(request, hold=not found.slow).send_all(answers)


class _Responder:
    """Sends each pending answer with the message after it, in one write: a query with
    one match costs the peer one read, not two. Answers that may be slow to follow are
    not held (``hold``)."""

    def __init__(self, request: Request, hold: bool) -> None:
        self.request = request
        self.hold = hold
        self._pending: dict[int, bytes] = {}
        self._held: list[Buffer] = []

    def send_all(self, answers: Iterator[Answer]) -> None:
        try:
            for answer in answers:
                if answer.pending and answer.identifier is not None:
                    self._pending_answer(answer.status, answer.identifier)
                else:
                    self._respond(answer.status, answer.comment)
                    return
        except (ConnectionError, OSError):
            raise
        except Exception as exc:  # a bug must still end the query for the peer
            log.exception("C-FIND failed")
            self._respond(status.UNABLE_TO_PROCESS, f"processing failure: {exc}")
            return
        self._respond(status.SUCCESS)

    def _respond(self, code: int, comment: str = "") -> None:
        held, self._held = self._held, []
        self.request.respond(code, comment, before=held)

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
        association, context_id = self.request.association, self.request.context.id
        held = self._held
        self._held = (association.encoded(context_id, encoded, data) or []) if self.hold else []
        if not self._held:  # not held, or too large to hold: sent now, after the one held
            association.send_encoded(context_id, encoded, data, held)
        elif held:
            association.transport.send(held)
