"""The DIMSE server: associations accepted, negotiated and served, one thread each.

A connection's thread reads the A-ASSOCIATE-RQ (within the ACSE timeout), checks
access, negotiates from the catalog and then serves requests in turn until the peer
releases or aborts: no other thread touches the association. Services are handlers
on this server instance, so several servers can run in one process.

Shutdown order matters for durability: stop accepting, let associations end by
themselves for ``shutdown_grace`` seconds, then end the rest at their next message
boundary: a C-STORE being ingested commits before it answers, and a data set still
arriving is never acknowledged, so the sender knows to send it again.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pacsnode import status
from pacsnode.archive.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from pacsnode.config import Settings
from pacsnode.dimse import access, catalog, tls
from pacsnode.dimse.access import AccessControl, Refusal
from pacsnode.dimse.qr_model import negotiate_extended
from pacsnode.dimse.requests import Request, Session
from pacsnode.dimse.slots import AssociationSlots
from pacsnode.net import commands
from pacsnode.net.association import RELEASE, Aborted, Association, Context, Message, Sink
from pacsnode.net.negotiation import negotiate
from pacsnode.net.pdu import (
    A_ASSOCIATE_RQ,
    APPLICATION_CONTEXT,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    PduError,
    UserInformation,
    decode_request,
    encode_accept,
    encode_reject,
)
from pacsnode.net.transport import ConnectionClosed, TimedOut, Transport

log = logging.getLogger("pacsnode.dimse")

SILENT_CONNECTIONS = 200
"""Open connections yet to send their A-ASSOCIATE-RQ that do not count against
``max_associations``; each is closed after ``acse_timeout``."""
ACCEPT_DEFERRAL = 0.02
"""Seconds a worker waits, per connection it serves above the least busy worker,
before it takes a new connection itself."""

Handler = Callable[[Request], None]
SinkFactory = Callable[[Session, dict[str, object], Context], Sink | None]


@dataclass(frozen=True)
class Identity:
    """How the server presents itself in A-ASSOCIATE-AC."""

    implementation_class_uid: str
    implementation_version_name: str


IDENTITY = Identity(IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)


class DimseServer:
    def __init__(
        self,
        settings: Settings,
        access_control: AccessControl,
        identity: Identity = IDENTITY,
        slots: AssociationSlots | None = None,
    ) -> None:
        self.settings = settings
        self.access = access_control
        self.identity = identity
        self.slots = slots or AssociationSlots(settings.max_associations)
        self.offers = catalog.offers(settings)
        self.handlers: dict[int, Handler] = {commands.C_ECHO_RQ: _echo}
        self.sink_factory: SinkFactory | None = None
        self.on_end: list[Callable[[Session, str], None]] = []
        """Called as each association ends, with how it ended: audit, log summary."""
        self._listeners: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        self._sessions: set[Session] = set()
        self._lock = threading.Lock()
        self._connections = 0
        self._draining = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._leaving = threading.Event()
        """Set while the node leaves its load balancer: the health check is refused."""

    # --- listening ---------------------------------------------------------------

    def listen(self, sock: socket.socket, tls_context: ssl.SSLContext | None = None) -> None:
        """Serve the connections of a bound, listening socket, from a thread of its own."""
        self._listeners.append((sock, tls_context))
        name = "dimse-tls-accept" if tls_context else "dimse-accept"
        threading.Thread(
            target=self._accept, args=(sock, tls_context), name=name, daemon=True
        ).start()
        host, port = sock.getsockname()[:2]
        kind = "DIMSE TLS" if tls_context else "DIMSE"
        log.info("%s server %s listening on %s:%d", kind, self.settings.ae_title, host, port)

    @property
    def port(self) -> int:
        return int(self._listeners[0][0].getsockname()[1])

    def _accept(self, listener: socket.socket, tls_context: ssl.SSLContext | None) -> None:
        """Take the connections of a listener the node's worker processes share.

        Every worker waits for a connection to arrive, and a busier worker lets the
        others try first: left to the kernel, the worker that accepted last is woken
        first, and four senders could all land on one process (one core).
        """
        listener.setblocking(False)
        while True:
            try:
                select.select([listener], [], [])
                if lead := self.slots.lead():
                    time.sleep(min(lead, 4) * ACCEPT_DEFERRAL)
                sock, address = listener.accept()
            except BlockingIOError:
                continue  # another worker took it
            except (OSError, ValueError):
                return  # closed by stop()
            sock.setblocking(True)
            self.slots.connected()
            with self._lock:
                crowded = self._connections >= self.settings.max_associations + SILENT_CONNECTIONS
                if not crowded:
                    self._connections += 1
            if crowded:
                log.warning("connection from %s:%d closed: too many connections", *address[:2])
                sock.close()
                self.slots.disconnected()
                continue
            threading.Thread(
                target=self._connection, args=(sock, address, tls_context), daemon=True
            ).start()

    def _connection(
        self, sock: socket.socket, address: tuple[str, int], tls_context: ssl.SSLContext | None
    ) -> None:
        try:
            if tls_context is not None:
                wrapped = tls.handshake(sock, address, tls_context, self.settings.acse_timeout)
                if wrapped is None:
                    return
                sock = wrapped
            self._serve(Transport(sock, self.settings.max_pdu_size, self.settings.network_timeout))
        except Exception:  # a bug must cost one association, never the server
            log.exception("association from %s:%d failed", *address[:2])
            sock.close()
        finally:
            self.slots.disconnected()
            with self._lock:
                self._connections -= 1
                self._idle.notify_all()

    # --- establishing ------------------------------------------------------------

    def _serve(self, transport: Transport) -> None:
        request = self._association_request(transport)
        if request is None:
            return
        address = transport.peer
        refusal = self._refusal(request, address)
        if refusal is not None:
            transport.send(
                [encode_reject(AssociateReject(refusal.result, refusal.source, refusal.reason))]
            )
            if refusal is not LEAVING:
                access.report_refusal(refusal, request.calling_ae, request.called_ae, address)
            transport.close()
            return
        try:
            association = self._accept_association(transport, request)
        except BaseException:
            self.slots.give_back()
            raise
        self._serve_association(association)

    def _association_request(self, transport: Transport) -> AssociateRequest | None:
        """The A-ASSOCIATE-RQ, read within the ACSE timeout (ARTIM, PS3.8 9.1.5)."""
        try:
            pdu_type, body = transport.read_pdu(self.settings.acse_timeout)
            if pdu_type != A_ASSOCIATE_RQ:
                raise PduError(f"PDU type 0x{pdu_type:02X} before A-ASSOCIATE-RQ")
            return decode_request(body)
        except TimedOut as exc:
            host, port = transport.peer
            log.info("connection from %s:%d closed: %s", host, port, exc)
            transport.close()
        except ConnectionClosed:
            transport.close()
        except PduError as exc:
            host, port = transport.peer
            log.warning(
                "connection from %s:%d aborted, invalid A-ASSOCIATE-RQ: %s", host, port, exc
            )
            transport.abort()
        return None

    def _refusal(self, request: AssociateRequest, address: tuple[str, int]) -> Refusal | None:
        cluster = self.settings.cluster
        if self._leaving.is_set() and cluster and request.calling_ae == cluster.health_check_ae:
            return LEAVING
        if request.application_context != APPLICATION_CONTEXT:
            return Refusal(2, f"application context {request.application_context}")
        if not request.protocol_version & 1:
            return Refusal(2, "protocol version 1 not offered", source=2)
        try:
            refusal = self.access.refusal(request.calling_ae, request.called_ae, address[0])
        except Exception:  # a failed check refuses, it does not admit
            log.exception("cannot check the association %s", request.calling_ae)
            refusal = Refusal(
                access.NO_REASON_GIVEN, "access check failed", access.REJECTED_TRANSIENT
            )
        if refusal is None and not self.slots.take():
            refusal = Refusal(
                access.LOCAL_LIMIT_EXCEEDED,
                f"more than {self.settings.max_associations} associations",
                access.REJECTED_TRANSIENT,
                access.SERVICE_PROVIDER_PRESENTATION,
            )
        return refusal

    def _accept_association(self, transport: Transport, request: AssociateRequest) -> Association:
        negotiated = negotiate(
            request, self.offers, self.settings.transfer_syntax_choice, negotiate_extended
        )
        asynchronous = (1, 1) if request.user.asynchronous_operations else None
        accept = AssociateAccept(
            request.called_ae,
            request.calling_ae,
            negotiated.results,
            UserInformation(
                max_length=self.settings.max_pdu_size,
                implementation_class_uid=self.identity.implementation_class_uid,
                implementation_version_name=self.identity.implementation_version_name,
                asynchronous_operations=asynchronous,
                roles=negotiated.roles,
                extended=negotiated.extended,
            ),
        )
        transport.send([encode_accept(accept)])
        return Association(
            transport,
            negotiated.contexts,
            request,
            accept,
            is_requestor=False,
            idle_timeout=self.settings.network_timeout,
        )

    # --- serving -----------------------------------------------------------------

    def _serve_association(self, association: Association) -> None:
        services = self.access.services(association.calling_ae)
        session = Session(association, services)
        with self._lock:
            self._sessions.add(session)
        how = "aborted"
        try:
            how = self._requests(session)
        except Aborted as exc:
            log.warning("association %s aborted: %s", association, exc)
        except ConnectionClosed as exc:
            log.info("association %s lost: %s", association, exc)
        finally:
            self.slots.give_back()  # before the connection's last moments: it is over
            with self._lock:
                self._sessions.discard(session)
                self._idle.notify_all()
            for listener in self.on_end:
                try:
                    listener(session, how)
                except Exception:
                    log.exception("after the association %s", association)
            association.transport.close()

    def _requests(self, session: Session) -> str:
        association = session.association
        sinks = self.sink_factory
        while True:
            if self._draining.is_set():
                association.abort()
                return "aborted (shutting down)"
            message = association.receive(
                (lambda command, context: sinks(session, command, context)) if sinks else None
            )
            if message is RELEASE:
                association.answer_release()
                return "released"
            assert isinstance(message, Message)
            session.busy = True
            try:
                self._dispatch(Request(session, message))
            finally:
                session.busy = False

    def _dispatch(self, request: Request) -> None:
        message = request.message
        field = message.field
        if message.is_response or field == commands.C_CANCEL_RQ:
            return  # a late answer, or a cancel of what already ended
        service = access.requested_service(message.command)
        if service is not None and service not in request.session.services:
            host = request.association.peer_address[0]
            comment = access.report_refused_service(service, request.session.calling_ae, host)
            request.respond(status.NOT_AUTHORIZED, comment)
            return
        handler = self.handlers.get(field)
        if handler is None:
            request.respond(
                status.UNRECOGNIZED_OPERATION, f"{commands.describe(message.command)} not served"
            )
            return
        try:
            handler(request)
        except (Aborted, ConnectionClosed):
            raise
        except Exception as exc:  # a bug must still end the operation for the peer
            log.exception(
                "%s from %s failed", commands.describe(message.command), request.session.calling_ae
            )
            request.respond(status.PROCESSING_FAILURE, f"processing failure: {exc}")

    # --- stopping ----------------------------------------------------------------

    def leave_balancer(self) -> None:
        """A cluster node about to stop: for ``drain_seconds`` its load balancer's
        health check is refused while every other association is served as before, so
        that the balancer marks it down and stops sending it new associations; only
        then do its ports close (:meth:`stop`). Closing at once would reset a connection
        the balancer has just made and the node not yet accepted."""
        cluster = self.settings.cluster
        if cluster is None or cluster.drain_seconds <= 0 or not self._listeners:
            return
        self._leaving.set()
        log.info(
            "leaving the load balancer: refusing its health check (%s) for %.1f s",
            cluster.health_check_ae,
            cluster.drain_seconds,
        )
        time.sleep(cluster.drain_seconds)

    def stop(self) -> None:
        """Stop accepting; give associations ``shutdown_grace`` seconds to end, then end
        the idle ones at once and the busy ones as their operation completes."""
        for sock, _context in self._listeners:
            stop_listening(sock)
        self._listeners.clear()
        grace = self.settings.shutdown_grace
        with self._lock:
            if not self._idle.wait_for(lambda: not self._sessions, grace):
                log.warning("associations still open after %.0f s; ending them", grace)
            self._draining.set()
            idle = [session for session in self._sessions if not session.busy]
        for session in idle:
            session.association.abort()
        with self._lock:
            if not self._idle.wait_for(lambda: not self._sessions, grace):
                log.warning("associations still busy after another %.0f s; aborting", grace)
            remaining = list(self._sessions)
        for session in remaining:
            session.association.abort()

    @property
    def associations(self) -> int:
        with self._lock:
            return len(self._sessions)


LEAVING = Refusal(
    access.TEMPORARY_CONGESTION,
    "leaving the load balancer",
    access.REJECTED_TRANSIENT,
    access.SERVICE_PROVIDER_PRESENTATION,
)
"""What the health check gets while the node leaves its load balancer."""


def stop_listening(sock: socket.socket) -> None:
    """Refuse new connections from now on. A plain close would leave an ``accept``
    blocked in another thread to take one more connection, and a socket the parent of
    worker processes still holds would go on queueing them; ``shutdown`` ends the
    listening itself, so a load balancer's next attempt goes to another node."""
    with contextlib.suppress(OSError):  # another process of the node did it first
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _echo(request: Request) -> None:
    request.respond(status.SUCCESS)
