"""Access control of the DIMSE door: who may associate with us, and what they may ask.

Two stages, as synedra AIM and syngo.share describe theirs:

* When an association is requested, the called AE title (``check_called_ae``), the
  calling AE title (``unknown_calling_ae``) and, for a remote AE with ``check_host``,
  the peer's address are checked. A refusal is an A-ASSOCIATE-RJ with the PS3.8 result,
  source and reason: rejected-permanent by the service user, "calling AE title not
  recognized" (3; also for a known AE title calling from another host) or "called AE
  title not recognized" (7). An association beyond ``max_associations`` is refused
  rejected-transient, service provider (presentation), "local limit exceeded" (2).
  pynetdicom lets an EVT_REQUESTED handler send the rejection before it negotiates;
  :meth:`AccessControl.on_requested` does that, the way pynetdicom's own ACSE rejects,
  so that every refusal, ours and pynetdicom's, reaches
  :meth:`AccessControl.on_rejected` to be logged and audited.
* On an accepted association, a request for a service the calling AE is not allowed
  (``allowed`` of its remote AE, ``unknown_ae_allowed`` for others) is answered with
  status 0124 (Refused: Not Authorized, PS3.7 Annex C), as Orthanc answers a request
  its ``Allow*`` settings forbid. Presentation contexts are negotiated as for anyone:
  a peer allowed only C-GET still needs storage contexts for the C-STOREs it receives,
  and a status tells its user why better than a context rejected as "abstract syntax
  not supported".
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import (
    C_ECHO,
    C_FIND,
    C_GET,
    C_MOVE,
    C_STORE,
    N_ACTION,
    N_CREATE,
    N_SET,
)
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE

from pacsnode import audit
from pacsnode.archive.remotes import Remotes
from pacsnode.config import SERVICES, Settings
from pacsnode.dimse.worklist_scp import MODALITY_WORKLIST_FIND

log = logging.getLogger("pacsnode.dimse.access")

NOT_AUTHORIZED = 0x0124
REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SERVICE_USER = 0x01
NO_REASON_GIVEN = 0x01
SERVICE_PROVIDER_PRESENTATION = 0x03
LOCAL_LIMIT_EXCEEDED = 0x02
CALLING_AE_NOT_RECOGNIZED = 0x03
CALLED_AE_NOT_RECOGNIZED = 0x07

Serve = Callable[[Any, int], None]
RESULTS = {REJECTED_PERMANENT: "rejected-permanent", REJECTED_TRANSIENT: "rejected-transient"}
REASONS = {  # PS3.8 Table 9-21, by result source and reason/diagnostic
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


@dataclass(frozen=True)
class Refusal:
    """An A-ASSOCIATE-RJ to send, with the reason in words for the log and audit."""

    reason: int
    detail: str
    result: int = REJECTED_PERMANENT
    source: int = SERVICE_USER


def requested_service(request: object) -> str | None:
    """The ``allowed`` word of a DIMSE request; None for what is not a service asked
    of us (an N-EVENT-REPORT answers a storage commitment request of ours)."""
    if isinstance(request, C_FIND):
        return "mwl" if request.AffectedSOPClassUID == MODALITY_WORKLIST_FIND else "find"
    kinds: dict[type, str] = {
        C_ECHO: "echo",
        C_STORE: "store",
        C_MOVE: "move",
        C_GET: "get",
        N_ACTION: "commit",
        N_CREATE: "mpps",
        N_SET: "mpps",
    }
    return kinds.get(type(request))


def host_addresses(host: str) -> set[str]:
    """Every address ``host`` resolves to now; none when it does not resolve."""
    try:
        answers = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return set()
    return {_plain_address(str(answer[4][0])) for answer in answers}


def _plain_address(address: str) -> str:
    """An IPv4 peer of a dual-stack socket shows as ::ffff:a.b.c.d; compare a.b.c.d."""
    try:
        parsed = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


class AccessControl:
    def __init__(self, settings: Settings, remotes: Remotes) -> None:
        self.settings = settings
        self.remotes = remotes
        self._details: dict[int, str] = {}  # id(association) -> why we refused it

    def refusal(self, calling_ae: str, called_ae: str, address: str) -> Refusal | None:
        """Why an association from ``calling_ae`` at ``address`` is refused, if it is."""
        if self.settings.check_called_ae and not self._serves_called(called_ae):
            return Refusal(CALLED_AE_NOT_RECOGNIZED, f"we are not {called_ae!r}")
        remote = self.remotes.get(calling_ae)
        if remote is None:
            if self.settings.unknown_calling_ae == "reject":
                return Refusal(CALLING_AE_NOT_RECOGNIZED, "not a known remote AE")
            return None
        if remote.check_host and _plain_address(address) not in host_addresses(remote.host):
            return Refusal(
                CALLING_AE_NOT_RECOGNIZED, f"{address} is not the host {remote.host} of the AE"
            )
        return None

    def services(self, calling_ae: str) -> frozenset[str]:
        """What ``calling_ae`` may ask of us."""
        remote = self.remotes.get(calling_ae)
        allowed = self.settings.unknown_ae_allowed if remote is None else remote.allowed
        return frozenset(allowed or SERVICES)

    def _serves_called(self, called_ae: str) -> bool:
        if called_ae == self.settings.ae_title.strip():
            return True
        remote = self.remotes.get(called_ae) if self.settings.move_spanning else None
        return remote is not None and remote.offers_service("move")

    def on_requested(self, event: Event) -> None:
        """EVT_REQUESTED: refuse before negotiation, or admit with the AE's services."""
        assoc = event.assoc
        request = cast(A_ASSOCIATE, assoc.requestor.primitive)
        calling = str(request.calling_ae_title).strip()
        called = str(request.called_ae_title).strip()
        try:
            refusal = self.refusal(calling, called, assoc.requestor.address)
            services = self.services(calling)
        except Exception:  # pynetdicom would log it and accept: refuse instead
            log.exception("cannot check the association %s -> %s", calling, called)
            refusal = Refusal(NO_REASON_GIVEN, "access check failed", REJECTED_TRANSIENT)
        if refusal is None and self._over_limit(assoc):
            refusal = Refusal(
                LOCAL_LIMIT_EXCEEDED,
                f"more than {self.settings.max_associations} associations",
                REJECTED_TRANSIENT,
                SERVICE_PROVIDER_PRESENTATION,
            )
        if refusal is not None:
            self._details[id(assoc)] = refusal.detail
            assoc.acse.send_reject(refusal.result, refusal.source, refusal.reason)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()
            return
        if services != frozenset(SERVICES):
            _guard(assoc, services)

    def _over_limit(self, assoc: Association) -> bool:
        """Whether more than ``max_associations`` associations have asked to be served.

        pynetdicom's own limit counts every open connection, also one that has not
        asked yet: a few silent connections (a port scan) would lock every modality out
        until their ACSE timeout. Only requests that arrived count here.
        """
        asking = [
            other
            for other in assoc.ae.active_associations
            if other.is_acceptor
            and other.requestor.primitive is not None
            and not (other.is_rejected or other.is_aborted or other.is_released)
        ]
        return len(asking) > self.settings.max_associations

    def on_rejected(self, event: Event) -> None:
        """EVT_REJECTED, ours and pynetdicom's (too many associations): log and audit."""
        assoc = event.assoc
        request = cast(A_ASSOCIATE, assoc.requestor.primitive)
        answer = cast(A_ASSOCIATE, assoc.acceptor.primitive)
        calling = str(request.calling_ae_title).strip()
        called = str(request.called_ae_title).strip()
        address = assoc.requestor.address
        reason = REASONS.get((answer.result_source or 0, answer.diagnostic or 0), "reason unknown")
        detail = self._details.pop(id(assoc), "")
        if detail:
            reason = f"{reason} ({detail})"
        log.warning(
            "association %s -> %s from %s:%d refused, %s: %s",
            calling,
            called,
            address,
            assoc.requestor.port,
            RESULTS.get(answer.result or 0, "rejected"),
            reason,
        )
        audit.association_refused(calling, called, address, reason)


def _guard(assoc: Association, services: frozenset[str]) -> None:
    """Answer requests for other services on this association with 0124.

    pynetdicom serves every request through ``Association._serve_request``; this
    association's own attribute stands in front of it, so other associations, and
    this one's allowed requests, take pynetdicom's path untouched.
    """
    serve: Serve = assoc._serve_request

    def guarded(request: Any, context_id: int) -> None:
        service = requested_service(request)
        known = any(cx.context_id == context_id for cx in assoc.accepted_contexts)
        if service is None or service in services or not known:
            serve(request, context_id)
            return
        _refuse(assoc, request, context_id, service)

    assoc._serve_request = guarded  # type: ignore[method-assign, assignment]


def _refuse(assoc: Association, request: Any, context_id: int, service: str) -> None:
    calling = assoc.requestor.ae_title.strip()
    address = assoc.requestor.address
    log.warning(
        "%s from %s@%s refused (0124 Not Authorized): not among its allowed services",
        service,
        calling,
        address,
    )
    audit.security_alert(
        audit.Actor(calling, address, requestor=True),
        f"{service} refused: not among the services allowed for {calling}",
    )
    if isinstance(request, C_STORE):
        _discard(request)
    assoc.dimse.send_msg(_refused(request, f"{service} is not allowed for {calling}"), context_id)


def _refused(request: Any, comment: str) -> Any:
    """The response of ``request`` with status 0124, as its service class would build it."""
    response = type(request)()
    response.MessageIDBeingRespondedTo = request.MessageID
    if isinstance(request, N_ACTION | N_SET):  # these name the instance they act on
        response.AffectedSOPClassUID = request.RequestedSOPClassUID
        response.AffectedSOPInstanceUID = request.RequestedSOPInstanceUID
    else:
        response.AffectedSOPClassUID = request.AffectedSOPClassUID
    if isinstance(request, C_STORE | N_CREATE):
        response.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
    if isinstance(request, N_ACTION):
        response.ActionTypeID = request.ActionTypeID
    response.Status = NOT_AUTHORIZED
    response.ErrorComment = comment[:64]
    return response


def _discard(request: C_STORE) -> None:
    """Delete the data set pynetdicom spooled to a file while it arrived (its storage
    service class would delete it after the handler; refused, none runs)."""
    spooled = request._dataset_file
    if spooled is None:
        return
    spooled.close()
    try:
        os.unlink(spooled.name)
    except OSError:
        log.warning("cannot delete the refused data set %s", spooled.name)
