"""The DIMSE-N operations as the invoking side (PS3.7 section 10): create, set, get,
action, delete and event report, on an open association.

Each returns the response's status, Error Comment, data set and Affected SOP
Instance UID (which an N-CREATE may learn only from the response). A request the
peer sends meanwhile (a printer's N-EVENT-REPORT) goes to ``on_request``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom import Dataset

from pacsnode.dimse import codec
from pacsnode.dimse.scu import final, request
from pacsnode.net import commands
from pacsnode.net.association import Association, Context, Message

OnRequest = Callable[[Message], None] | None


@dataclass(frozen=True)
class NResult:
    status: int
    comment: str = ""
    data: Dataset | None = None
    instance: str = ""
    """Affected SOP Instance UID of the response."""


def _invoke(
    association: Association,
    context: Context,
    command: dict[str, object],
    dataset: Dataset | None,
    on_request: OnRequest,
) -> NResult:
    data = None if dataset is None else codec.encode(dataset, context.transfer_syntax)
    answer = final(request(association, context.id, command, data, on_request))
    returned = answer.data
    return NResult(
        int(answer.command.get("Status", -1)),
        str(answer.command.get("ErrorComment", "")),
        codec.decode(returned, context.transfer_syntax) if returned else None,
        str(answer.command.get("AffectedSOPInstanceUID", "")),
    )


def n_create(
    association: Association,
    context: Context,
    sop_class: str,
    instance: str | None,
    dataset: Dataset | None,
    on_request: OnRequest = None,
) -> NResult:
    command: dict[str, object] = {
        "CommandField": commands.N_CREATE_RQ,
        "AffectedSOPClassUID": sop_class,
    }
    if instance:
        command["AffectedSOPInstanceUID"] = instance
    return _invoke(association, context, command, dataset, on_request)


def _requested(field: int, sop_class: str, instance: str) -> dict[str, object]:
    return {
        "CommandField": field,
        "RequestedSOPClassUID": sop_class,
        "RequestedSOPInstanceUID": instance,
    }


def n_set(
    association: Association,
    context: Context,
    sop_class: str,
    instance: str,
    dataset: Dataset,
    on_request: OnRequest = None,
) -> NResult:
    command = _requested(commands.N_SET_RQ, sop_class, instance)
    return _invoke(association, context, command, dataset, on_request)


def n_get(
    association: Association,
    context: Context,
    sop_class: str,
    instance: str,
    attributes: Sequence[int] = (),
    on_request: OnRequest = None,
) -> NResult:
    command = _requested(commands.N_GET_RQ, sop_class, instance)
    if attributes:
        command["AttributeIdentifierList"] = list(attributes)
    return _invoke(association, context, command, None, on_request)


def n_action(
    association: Association,
    context: Context,
    sop_class: str,
    instance: str,
    action_type: int,
    dataset: Dataset | None = None,
    on_request: OnRequest = None,
) -> NResult:
    command = _requested(commands.N_ACTION_RQ, sop_class, instance)
    command["ActionTypeID"] = action_type
    return _invoke(association, context, command, dataset, on_request)


def n_delete(
    association: Association,
    context: Context,
    sop_class: str,
    instance: str,
    on_request: OnRequest = None,
) -> NResult:
    command = _requested(commands.N_DELETE_RQ, sop_class, instance)
    return _invoke(association, context, command, None, on_request)


def answer_event_report(association: Association, message: Message, code: int) -> None:
    """Respond to an N-EVENT-REPORT the peer sent us."""
    command = message.command
    response = {
        "CommandField": commands.N_EVENT_REPORT_RSP,
        "MessageIDBeingRespondedTo": command.get("MessageID", 0),
        "AffectedSOPClassUID": command.get("AffectedSOPClassUID", ""),
        "AffectedSOPInstanceUID": command.get("AffectedSOPInstanceUID", ""),
        "EventTypeID": command.get("EventTypeID", 0),
        "Status": code,
    }
    association.send(message.context.id, response)
