"""Sending what the archive holds to a remote AE on request (``POST
/api/remote/{ae}/store``): a durable ``store`` job, run by the same sender as routing's
``route`` jobs (its payload has their shape), so that it is retried while the remote
is away and survives a restart.

The request is checked when it is queued: an unknown remote, one that takes nothing
unasked (``move_destination_only``) or does not offer store, and UIDs the archive does
not hold are refused at once rather than failing later in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pacsnode.archive.remotes import RemoteNotFound
from pacsnode.archive.retrieve import locate
from pacsnode.errors import FieldError, text_field, uid_list

if TYPE_CHECKING:
    from pacsnode.archive.core import Archive

STORE_JOB = "store"


class SendError(FieldError):
    """A request that cannot be sent as asked; ``field`` names what to correct."""


class NothingToSend(LookupError):
    """The archive holds nothing (visible) of what was asked for."""


@dataclass(frozen=True)
class SendRequest:
    """A study, some of its series, or some instances of it."""

    remote: str
    study: str
    series: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, remote: str, values: dict[str, Any]) -> SendRequest:
        request = cls(
            remote,
            text_field(values.get("study"), "study", SendError),
            uid_list(values.get("series"), "series", SendError),
            uid_list(values.get("instances"), "instances", SendError),
        )
        unknown = set(values) - {"study", "series", "instances"}
        if unknown:
            raise SendError(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
        if not request.study:
            raise SendError("study is required: the Study Instance UID", "study")
        return request


def plan(archive: Archive, request: SendRequest) -> tuple[dict[str, Any], str]:
    """The job's payload and description; raises if it cannot be sent as asked."""
    remote = archive.remotes.get(request.remote)
    if remote is None:
        raise RemoteNotFound(f"no remote AE {request.remote!r}")
    if remote.move_destination_only:
        raise SendError(f"{remote.ae_title} is a C-MOVE destination only", "remote")
    if not remote.offers_service("store"):
        raise SendError(f"{remote.ae_title} does not offer store", "remote")
    found = []
    for series in request.series or (None,):
        held = locate(archive, request.study, series)
        if not held:
            where = f"series {series} of study" if series else "study"
            raise NothingToSend(f"the archive holds no {where} {request.study}")
        found += held
    if request.instances:
        found = [item for item in found if item.sop_instance_uid in request.instances]
        missing = set(request.instances) - {item.sop_instance_uid for item in found}
        if missing:
            raise NothingToSend(f"the archive holds no instance {sorted(missing)[0]} there")
    whole_study = not (request.series or request.instances)
    payload = {
        "rule": "store request",
        "destination": remote.ae_title,
        "instances": [] if whole_study else [item.sop_instance_uid for item in found],
        "study": request.study if whole_study else None,
        "transfer_syntax": "",
        "allow_lossy": False,
        "commit": False,
    }
    what = f"study {request.study}" if whole_study else f"{len(found)} instances"
    return payload, f"store {what} to {remote.ae_title}"
