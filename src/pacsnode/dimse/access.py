"""Access control of the DIMSE door: who may associate with us, and what they may ask.

Two stages, as synedra AIM and syngo.share describe theirs:

* When an association is requested, the called AE title (``check_called_ae``), the
  calling AE title (``unknown_calling_ae``) and, for a remote AE with ``check_host``,
  the peer's address are checked. A refusal is an A-ASSOCIATE-RJ with the PS3.8 result,
  source and reason: rejected-permanent by the service user, "calling AE title not
  recognized" (3; also for a known AE title calling from another host) or "called AE
  title not recognized" (7). An association beyond ``max_associations`` is refused
  rejected-transient, service provider (presentation), "local limit exceeded" (2).
  Every refusal is logged and audited (:func:`report_refusal`).
* On an accepted association, a request for a service the calling AE is not allowed
  (``allowed`` of its remote AE, ``unknown_ae_allowed`` for others) is answered with
  status 0124 (Refused: Not Authorized, PS3.7 Annex C) by the server, as Orthanc
  answers a request its ``Allow*`` settings forbid. Presentation contexts are
  negotiated as for anyone: a peer allowed only C-GET still needs storage contexts
  for the C-STOREs it receives, and a status tells its user why better than a
  context rejected as "abstract syntax not supported".
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from pacsnode import audit
from pacsnode.archive.remotes import Remotes
from pacsnode.config import SERVICES, Settings
from pacsnode.dimse.catalog import MODALITY_WORKLIST_FIND
from pacsnode.net import commands
from pacsnode.net.pdu import REJECT_REASONS, REJECT_RESULTS

log = logging.getLogger("pacsnode.dimse.access")

REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SERVICE_USER = 0x01
NO_REASON_GIVEN = 0x01
SERVICE_PROVIDER_PRESENTATION = 0x03
TEMPORARY_CONGESTION = 0x01
LOCAL_LIMIT_EXCEEDED = 0x02
CALLING_AE_NOT_RECOGNIZED = 0x03
CALLED_AE_NOT_RECOGNIZED = 0x07


@dataclass(frozen=True)
class Refusal:
    """An A-ASSOCIATE-RJ to send, with the reason in words for the log and audit."""

    reason: int
    detail: str
    result: int = REJECTED_PERMANENT
    source: int = SERVICE_USER


_SERVICE_OF = {
    commands.C_ECHO_RQ: "echo",
    commands.C_STORE_RQ: "store",
    commands.C_MOVE_RQ: "move",
    commands.C_GET_RQ: "get",
    commands.N_ACTION_RQ: "commit",
    commands.N_CREATE_RQ: "mpps",
    commands.N_SET_RQ: "mpps",
}


def requested_service(command: dict[str, object]) -> str | None:
    """The ``allowed`` word of a DIMSE request; None for what is not a service asked
    of us (an N-EVENT-REPORT answers a storage commitment request of ours)."""
    field = command.get("CommandField")
    if field == commands.C_FIND_RQ:
        return "mwl" if command.get("AffectedSOPClassUID") == MODALITY_WORKLIST_FIND else "find"
    return _SERVICE_OF.get(field) if isinstance(field, int) else None


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


class OpenAccess(AccessControl):
    """Everyone may associate and ask anything: a listener of a command, for one peer."""

    def __init__(self) -> None:
        pass

    def refusal(self, calling_ae: str, called_ae: str, address: str) -> Refusal | None:
        return None

    def services(self, calling_ae: str) -> frozenset[str]:
        return frozenset(SERVICES)


def report_refusal(refusal: Refusal, calling: str, called: str, address: tuple[str, int]) -> None:
    """Log and audit an association we refused."""
    reason = REJECT_REASONS.get((refusal.source, refusal.reason), "reason unknown")
    log.warning(
        "association %s -> %s from %s:%d refused, %s: %s (%s)",
        calling,
        called,
        address[0],
        address[1],
        REJECT_RESULTS.get(refusal.result, "rejected"),
        reason,
        refusal.detail,
    )
    audit.association_refused(calling, called, address[0], f"{reason} ({refusal.detail})")


def report_refused_service(service: str, calling: str, address: str) -> str:
    """Log and audit a request for a service the calling AE may not use; returns the
    Error Comment of the 0124 answer."""
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
    return f"{service} is not allowed for {calling}"
