"""DICOM TLS (PS3.15 Annex B, BCP 195 profiles): the SSL contexts of both sides.

BCP 195 (RFC 9325) allows TLS 1.2 and 1.3 only and, for TLS 1.2, only cipher suites
with forward secrecy and authenticated encryption; TLS 1.3 suites all qualify. The
same contexts serve the TLS DIMSE port, HTTPS and our outbound associations.

The server does the handshake on the connection's own thread, never in the accept
loop: there, one client that connects and stays silent would stall every later
connection, and every failed handshake is logged and audited.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from pacsnode import audit
from pacsnode.config import ConfigError, RemoteAE, Settings

RemoteLookup = Callable[[str], RemoteAE | None]
"""The remote AE of an AE title: ``Remotes.get`` in the server, the config file's
entries in a command."""

log = logging.getLogger("pacsnode.dimse")

BCP195_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
"""TLS 1.2 suites of the BCP 195 profiles: (EC)DHE key exchange, AES-GCM or ChaCha20."""


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(settings: Settings, client_certificates: bool = True) -> ssl.SSLContext:
    """Our certificate, and clients' checked if ``tls_ca_certificates`` is set."""
    try:
        context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
        if client_certificates and settings.tls_ca_certificates:
            context.load_verify_locations(settings.tls_ca_certificates)
            context.verify_mode = (
                ssl.CERT_REQUIRED if settings.tls_require_client_certificate else ssl.CERT_OPTIONAL
            )
    except OSError as exc:  # ssl.SSLError is one too
        raise ConfigError(f"TLS certificate, key or CA bundle unusable: {exc}") from exc
    return context


def https_context(settings: Settings) -> ssl.SSLContext | None:
    """For the HTTP port when ``http_tls`` is on: HTTP users authenticate as users, and
    a browser asked for a certificate would prompt for one, so none is asked."""
    return server_context(settings, client_certificates=False) if settings.http_tls else None


def client_context(settings: Settings) -> ssl.SSLContext:
    """For calling a TLS remote AE: its certificate and host name are checked."""
    cafile = settings.tls_ca_certificates or None
    try:
        context = _harden(ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile))
        if settings.tls_certificate:
            context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    except OSError as exc:
        raise ConfigError(f"TLS certificate, key or CA bundle unusable: {exc}") from exc
    return context


def handshake(
    sock: socket.socket, address: tuple[str, int], context: ssl.SSLContext, timeout: float
) -> ssl.SSLSocket | None:
    """The connection with TLS established; None (and the socket closed) on a failed
    handshake, which is logged and audited."""
    host = str(address[0])
    try:
        sock.settimeout(timeout)
        connection = context.wrap_socket(sock, server_side=True)
    except OSError as exc:  # ssl.SSLError and TimeoutError are ones too
        timed_out = f"no handshake within {timeout:g} s" if isinstance(exc, TimeoutError) else ""
        reason = (
            timed_out
            or getattr(exc, "verify_message", None)  # a certificate that does not verify
            or getattr(exc, "reason", None)
            or str(exc)
            or type(exc).__name__
        )
        log.warning("DICOM TLS handshake with %s:%s failed: %s", host, address[1], reason)
        audit.security_alert(
            audit.Actor(host, host, requestor=True),
            f"DICOM TLS handshake failed: {reason}",
            kind="node-authentication",
        )
        sock.close()
        return None
    peer = connection.getpeercert()
    if peer:
        log.debug("DICOM TLS from %s:%s, certificate %s", host, address[1], _subject(peer))
    return connection


def _subject(certificate: dict[str, Any]) -> str:
    names = (f"{key}={value}" for rdn in certificate.get("subject", ()) for key, value in rdn)
    return ", ".join(names)


class OutboundTls:
    """Which outbound associations use TLS: those to a remote AE with ``tls = true``.

    A call is to that remote AE when the called AE title, host and port are the
    configured ones; a node reached at another address is not assumed to be it.
    """

    def __init__(self, settings: Settings, remote: RemoteLookup) -> None:
        self.settings = settings
        self.remote = remote
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = client_context(self.settings)
            return self._context

    def context_for(self, ae_title: str, host: str, port: int) -> ssl.SSLContext | None:
        """The client context for a call to this AE at this address, or ``None`` for a
        plain association."""
        remote = self.remote(ae_title)
        if remote is None or not remote.tls or (remote.host, remote.port) != (host, port):
            return None
        return self.context()

    def check(self) -> None:
        """Build the client context now if a configured remote AE needs it, so that a
        missing or unreadable certificate stops the start rather than every later job."""
        if any(remote.tls for remote in self.settings.remote_ae):
            self.context()
