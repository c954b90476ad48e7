"""Opening an association as the requestor (PS3.8 7.1): connect, propose, establish.

Presentation context IDs are the odd numbers 1 to 255, so at most 128 contexts are
proposed. A role selection item is sent for each SOP class where we want to act as
SCP (C-STORE sub-operations of our C-GET, storage commitment reports).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from pacsnode.net.association import Association, Context
from pacsnode.net.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    ACCEPTANCE,
    AssociateReject,
    AssociateRequest,
    ContextResult,
    PduError,
    ProposedContext,
    UserIdentity,
    UserInformation,
    decode_accept,
    decode_reject,
    encode_request,
)
from pacsnode.net.transport import ConnectionClosed, Transport

MAX_CONTEXTS = 128


@dataclass(frozen=True)
class Proposal:
    """A presentation context to propose, and the roles we want in it."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scu: bool = True
    scp: bool = False


@dataclass(frozen=True)
class LocalAE:
    """How we present ourselves and how long we wait."""

    ae_title: str
    implementation_class_uid: str
    implementation_version_name: str
    max_pdu: int = 1_048_576
    acse_timeout: float = 30.0
    network_timeout: float = 60.0
    dimse_timeout: float = 60.0


@dataclass(frozen=True)
class Endpoint:
    """Whom we call: address, AE title, and TLS if the remote AE uses it."""

    host: str
    port: int
    ae_title: str
    tls: ssl.SSLContext | None = None
    extended: dict[str, bytes] = field(default_factory=dict)
    """Extended negotiation per SOP class (Q/R relational queries and the like)."""
    user_identity: UserIdentity | None = None


class AssociationFailed(ConnectionError):
    """No association: unreachable, refused by TLS, rejected or aborted."""


class AssociationRejected(AssociationFailed):
    def __init__(self, detail: str, reject: AssociateReject) -> None:
        super().__init__(detail)
        self.reject = reject


def associate(local: LocalAE, endpoint: Endpoint, proposals: Sequence[Proposal]) -> Association:
    """An established association; raises :class:`AssociationFailed` otherwise."""
    if not proposals:
        raise ValueError("no presentation context to propose")
    if len(proposals) > MAX_CONTEXTS:
        raise ValueError(f"{len(proposals)} presentation contexts; at most {MAX_CONTEXTS}")
    where = f"{endpoint.ae_title}@{endpoint.host}:{endpoint.port}"
    sock = _connect(endpoint, local.acse_timeout, where)
    transport = Transport(sock, local.max_pdu, local.network_timeout)
    request = _request(local, endpoint, proposals)
    try:
        transport.send([encode_request(request)])
        pdu_type, body = transport.read_pdu(local.acse_timeout)
        if pdu_type == A_ASSOCIATE_RJ:
            reject = decode_reject(body)
            raise AssociationRejected(f"association with {where} rejected: {reject}", reject)
        if pdu_type == A_ABORT:
            raise AssociationFailed(f"no association with {where}: it aborted the request")
        if pdu_type != A_ASSOCIATE_AC:
            raise AssociationFailed(f"no association with {where}: it answered with PDU {pdu_type}")
        accept = decode_accept(body)
    except (ConnectionClosed, PduError) as exc:
        transport.close()
        raise AssociationFailed(f"no association with {where}: {exc}") from exc
    except AssociationFailed:
        transport.close()
        raise
    contexts = _accepted(request, accept.results, accept.user.roles)
    return Association(
        transport,
        contexts,
        request,
        accept,
        is_requestor=True,
        idle_timeout=local.dimse_timeout,
    )


def _connect(endpoint: Endpoint, timeout: float, where: str) -> socket.socket:
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise AssociationFailed(f"no association with {where}: cannot connect ({reason})") from exc
    if endpoint.tls is None:
        return sock
    try:
        return endpoint.tls.wrap_socket(sock, server_hostname=endpoint.host)
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise AssociationFailed(
            f"no association with {where}: TLS handshake failed ({exc})"
        ) from exc


def _request(local: LocalAE, endpoint: Endpoint, proposals: Sequence[Proposal]) -> AssociateRequest:
    contexts = [
        ProposedContext(1 + 2 * number, proposal.abstract_syntax, proposal.transfer_syntaxes)
        for number, proposal in enumerate(proposals)
    ]
    roles: dict[str, tuple[bool, bool]] = {
        p.abstract_syntax: (p.scu, p.scp) for p in proposals if p.scp
    }
    user = UserInformation(
        max_length=local.max_pdu,
        implementation_class_uid=local.implementation_class_uid,
        implementation_version_name=local.implementation_version_name,
        roles=roles,
        extended=dict(endpoint.extended),
        user_identity=endpoint.user_identity,
    )
    return AssociateRequest(endpoint.ae_title, local.ae_title, contexts, user)


def _accepted(
    request: AssociateRequest,
    results: Sequence[ContextResult],
    roles: dict[str, tuple[bool, bool]],
) -> dict[int, Context]:
    """The accepted contexts with the roles granted: as answered to a role selection
    we sent, SCU only where we sent none (PS3.7 D.3.3.4)."""
    proposed = {context.id: context for context in request.contexts}
    contexts: dict[int, Context] = {}
    for result in results:
        context = proposed.get(result.id)
        if context is None or result.result != ACCEPTANCE:
            continue
        asked = context.abstract_syntax in request.user.roles
        scu, scp = roles.get(context.abstract_syntax, (True, False)) if asked else (True, False)
        contexts[context.id] = Context(
            context.id, context.abstract_syntax, result.transfer_syntax, scu, scp
        )
    return contexts
