"""The network steps: TCP connect, TLS handshake, A-ASSOCIATE, C-ECHO.

Each is tried on its own so that a failure names its layer: a port nobody listens on,
a certificate the remote does not trust, an AE title it does not know, a Verification
service it does not offer. An association rejection is decoded into PS3.8's words,
with what to change on which side.
"""

from __future__ import annotations

import socket
import ssl
import time

from pacsnode import status
from pacsnode.archive.uids import UNCOMPRESSED_TRANSFER_SYNTAXES, VERIFICATION_SOP_CLASS
from pacsnode.dimse.scu import Peer, final, open_association, request
from pacsnode.doctor.report import Finding, Outcome
from pacsnode.net import commands
from pacsnode.net.association import Association
from pacsnode.net.pdu import AssociateReject
from pacsnode.net.requestor import AssociationFailed, AssociationRejected, Proposal

NETWORK = "network"


def _milliseconds(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def tcp(peer: Peer) -> Finding:
    started = time.monotonic()
    where = f"{peer.host}:{peer.port}"
    try:
        with socket.create_connection((peer.host, peer.port), timeout=peer.acse_timeout) as sock:
            ours = str(sock.getsockname()[0])
    except socket.gaierror as exc:
        return _tcp_failed(f"{peer.host} does not resolve ({exc.strerror})", _dns_hint(peer))
    except ConnectionRefusedError:
        return _tcp_failed(
            f"connection to {where} refused",
            f"nothing listens on {where}: check that the node runs and that {peer.port} is "
            "its DICOM port",
        )
    except TimeoutError:
        return _tcp_failed(
            f"no answer from {where} within {peer.acse_timeout:g} s",
            "a firewall may drop the connection, or the host is down or unreachable",
        )
    except OSError as exc:
        return _tcp_failed(f"cannot connect to {where}: {exc.strerror or exc}", "")
    elapsed = _milliseconds(started)
    return Finding(
        NETWORK,
        "tcp",
        Outcome.OK,
        f"TCP connection to {where} in {elapsed} ms",
        data={"milliseconds": elapsed, "our_address": ours},
    )


def _dns_hint(peer: Peer) -> str:
    return f"check the spelling of {peer.host!r}, or give the node's address instead"


def _tcp_failed(summary: str, hint: str) -> Finding:
    return Finding(NETWORK, "tcp", Outcome.FAILED, summary, hint)


def tls(peer: Peer) -> Finding:
    if peer.tls is None:
        return Finding(
            NETWORK,
            "tls",
            Outcome.SKIPPED,
            "plain DICOM: the remote AE is not configured with tls = true",
        )
    try:
        with (
            socket.create_connection((peer.host, peer.port), timeout=peer.acse_timeout) as raw,
            peer.tls.wrap_socket(raw, server_hostname=peer.host) as wrapped,
        ):
            version, cipher = wrapped.version(), wrapped.cipher()
    except ssl.SSLCertVerificationError as exc:
        return Finding(
            NETWORK,
            "tls",
            Outcome.FAILED,
            f"the remote's certificate is not trusted: {exc.verify_message}",
            f"its certificate must be signed by a CA of tls_ca_certificates and name {peer.host}",
        )
    except (OSError, ssl.SSLError) as exc:
        return Finding(
            NETWORK,
            "tls",
            Outcome.FAILED,
            f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}",
            "the remote may not speak TLS on this port, or may not accept our client "
            "certificate (tls_certificate) or TLS 1.2/1.3",
        )
    return Finding(
        NETWORK,
        "tls",
        Outcome.OK,
        f"TLS handshake: {version}, {cipher[0] if cipher else '?'}",
        data={"version": version, "cipher": cipher[0] if cipher else ""},
    )


REJECTION_HINTS = {
    (1, 1): "it gave no reason; nodes often reject so an AE title they do not know: check "
    "that it knows {calling} (calling) and that it is {called} (called)",
    (1, 2): "it does not speak the DICOM application context: is this a DICOM port?",
    (1, 3): "the remote does not know our AE title {calling}: add {calling}, with our "
    "address {address} and port {port}, to its list of known AEs",
    (1, 7): "the remote is not {called}: give its AE title with -aec, or correct our "
    "remote AE entry for it",
    (2, 2): "it does not support our protocol version (1)",
    (3, 1): "it is busy: try again later",
    (3, 2): "it serves as many associations as it allows: try again later, or raise its limit",
}


def rejection(reject: AssociateReject, peer: Peer, address: str, port: int) -> Finding:
    hint = REJECTION_HINTS.get((reject.source, reject.reason), "")
    return Finding(
        NETWORK,
        "association",
        Outcome.FAILED,
        f"association rejected: {reject}",
        hint.format(calling=peer.calling_ae, called=peer.ae_title, address=address, port=port),
        {"result": reject.result, "source": reject.source, "reason": reject.reason},
    )


def associate(peer: Peer, our_address: str, our_port: int) -> tuple[Finding, Association | None]:
    """An association proposing Verification alone, as a first contact."""
    proposal = Proposal(VERIFICATION_SOP_CLASS, tuple(UNCOMPRESSED_TRANSFER_SYNTAXES))
    try:
        association = open_association(peer, [proposal])
    except AssociationRejected as exc:
        return rejection(exc.reject, peer, our_address, our_port), None
    except AssociationFailed as exc:
        aborted = "aborted" in str(exc)
        hint = (
            f"some nodes abort instead of rejecting an AE title they do not know: check that "
            f"it knows {peer.calling_ae} and that it is {peer.ae_title}"
            if aborted
            else ""
        )
        return Finding(NETWORK, "association", Outcome.FAILED, str(exc), hint), None
    user = association.accept.user
    data = {
        "max_pdu": user.max_length,
        "implementation_class_uid": user.implementation_class_uid,
        "implementation_version_name": user.implementation_version_name,
        "our_address": local_address(association),
    }
    name = user.implementation_version_name or user.implementation_class_uid
    summary = f"association accepted by {name or 'the remote'}, maximum PDU {user.max_length}"
    return Finding(NETWORK, "association", Outcome.OK, summary, data=data), association


def local_address(association: Association) -> str:
    """Our address as the remote sees it: where it should send to reach us."""
    try:
        return str(association.transport.sock.getsockname()[0])
    except OSError:
        return ""


def echo(association: Association) -> Finding:
    context = association.context_for(VERIFICATION_SOP_CLASS)
    if context is None:
        return Finding(
            NETWORK,
            "echo",
            Outcome.NOT_OFFERED,
            "the remote refused the Verification service",
            "it accepts associations but not C-ECHO: some archives do; the other checks go on",
        )
    started = time.monotonic()
    command = {"CommandField": commands.C_ECHO_RQ, "AffectedSOPClassUID": VERIFICATION_SOP_CLASS}
    try:
        code = int(final(request(association, context.id, command)).command.get("Status", -1))
    except ConnectionError as exc:
        return Finding(NETWORK, "echo", Outcome.FAILED, f"C-ECHO failed: {exc}")
    elapsed = _milliseconds(started)
    data = {"status": f"{code:04X}", "milliseconds": elapsed}
    if code != status.SUCCESS:
        return Finding(
            NETWORK, "echo", Outcome.FAILED, f"C-ECHO {status.describe(code)}", data=data
        )
    return Finding(NETWORK, "echo", Outcome.OK, f"C-ECHO answered in {elapsed} ms", data=data)
