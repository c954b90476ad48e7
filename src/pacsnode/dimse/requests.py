"""A DIMSE request being served, and how a service answers it.

Every service is a handler taking a :class:`Request`: it reads the command and data
set, does its work through the archive core, and answers with :meth:`Request.respond`,
as often as its service sends responses. The response command set (Message ID Being
Responded To, the affected SOP class and instance, action or event type) is filled
in from the request as PS3.7 says for each message.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset

from pacsnode import audit
from pacsnode.dimse import codec
from pacsnode.net import commands
from pacsnode.net.association import Association, Context, Message
from pacsnode.net.transport import Buffer


@dataclass(eq=False)
class Session:
    """What the server keeps about one association while it lasts."""

    association: Association
    services: frozenset[str]
    """What the calling AE may ask of us (``allowed`` of its remote AE)."""
    started: float = field(default_factory=time.monotonic)
    busy: bool = False
    """Serving a request: a shutdown lets it finish."""
    outcomes: Counter[str] = field(default_factory=Counter)
    queries: int = 0
    """C-FINDs answered: counted in the association's log line, not one line each."""
    stored: list[str] = field(default_factory=list)
    """SOP Instance UIDs the archive holds from this association, for its audit."""

    @property
    def calling_ae(self) -> str:
        return self.association.calling_ae

    @property
    def actor(self) -> audit.Actor:
        host, _port = self.association.peer_address
        return audit.Actor(self.association.calling_ae, host, requestor=True, dicom=True)


@dataclass
class Request:
    session: Session
    message: Message

    @property
    def association(self) -> Association:
        return self.session.association

    @property
    def command(self) -> dict[str, Any]:
        return self.message.command

    @property
    def context(self) -> Context:
        return self.message.context

    @property
    def syntax(self) -> str:
        return self.message.context.transfer_syntax

    @property
    def message_id(self) -> int:
        return int(self.command.get("MessageID", 0))

    @property
    def sop_class(self) -> str:
        command = self.command
        return str(command.get("AffectedSOPClassUID") or command.get("RequestedSOPClassUID", ""))

    def dataset(self) -> Dataset:
        """The request's data set; raises :class:`codec.DecodeError` if it has none or
        it does not decode."""
        data = self.message.data
        if data is None:
            raise codec.DecodeError("the request has no data set")
        return codec.decode(data, self.syntax)

    def encode(self, dataset: Dataset) -> bytes:
        return codec.encode(dataset, self.syntax)

    def cancelled(self) -> bool:
        return self.association.cancelled(self.message_id)

    def respond(
        self,
        status: int,
        comment: str = "",
        data: bytes | list[Buffer] | None = None,
        *,
        before: Sequence[Buffer] = (),
        **fields: Any,
    ) -> None:
        """Answer; ``before`` is an answer already encoded, sent in the same write."""
        command = self.response(status, comment, **fields)
        self.association.send(self.context.id, command, data, before)

    def response(self, status: int, comment: str = "", **fields: Any) -> dict[str, Any]:
        """The response command set of this request."""
        command = self.command
        field_ = int(command["CommandField"])
        response: dict[str, Any] = {
            "CommandField": field_ | 0x8000,
            "MessageIDBeingRespondedTo": self.message_id,
            "Status": status,
        }
        if self.sop_class:
            response["AffectedSOPClassUID"] = self.sop_class
        instance = command.get("AffectedSOPInstanceUID") or command.get("RequestedSOPInstanceUID")
        if instance and field_ != commands.C_FIND_RQ:
            response["AffectedSOPInstanceUID"] = instance
        for key in ("ActionTypeID", "EventTypeID"):
            if key in command:
                response[key] = command[key]
        if comment:
            response["ErrorComment"] = comment[:64]
        response.update(fields)
        return response
