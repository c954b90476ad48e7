"""Audit messages to a syslog collector: RFC 5424 over UDP (RFC 5426), TCP or TLS
(RFC 5425 octet counting).

Sending never blocks whoever is audited: frames wait in a bounded queue served by one
thread, which reconnects after a failure (waiting longer each time, up to a minute).
What does not fit in the queue is dropped and counted in the log: losing an audit
message is bad, but stalling a C-STORE because a collector is down is worse.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

log = logging.getLogger("pacsnode.audit")

FACILITY_AUTHPRIV = 10
APP_NAME = "pacsnode"
MSGID = "IHE+RFC-3881"
BOM = "\ufeff".encode()
_SEVERITY = {0: 5, 4: 4, 8: 3, 12: 2}  # outcome -> notice, warning, error, critical
_MAX_BACKOFF = 60.0
_CONNECT_TIMEOUT = 5.0
MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4


@dataclass(frozen=True)
class Collector:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Collector:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "tcp", "tls") or not parts.hostname or not parts.port:
            raise ValueError(f"audit collector {url!r}: want udp://, tcp:// or tls://host:port")
        return cls(parts.scheme, parts.hostname, parts.port)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def frame(xml: str, outcome: int, when: datetime, hostname: str) -> bytes:
    """One RFC 5424 message: header, no structured data, the XML as UTF-8 with BOM."""
    priority = FACILITY_AUTHPRIV * 8 + _SEVERITY.get(outcome, 3)
    timestamp = when.isoformat(timespec="milliseconds")
    header = f"<{priority}>1 {timestamp} {hostname or '-'} {APP_NAME} {os.getpid()} {MSGID} - "
    return header.encode() + BOM + xml.encode()


class _Connection:
    """One open transport to the collector."""

    def __init__(self, collector: Collector, ca_file: str) -> None:
        self.collector = collector
        address = (collector.host, collector.port)
        if collector.scheme == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect(address)
            return
        plain = socket.create_connection(address, timeout=_CONNECT_TIMEOUT)
        if collector.scheme == "tls":
            context = ssl.create_default_context(cafile=ca_file or None)
            self.sock = context.wrap_socket(plain, server_hostname=collector.host)
        else:
            self.sock = plain

    def send(self, message: bytes) -> None:
        if self.collector.scheme == "udp":
            self.sock.send(message)
        else:  # octet counting: "LEN SP MSG"
            self.sock.sendall(str(len(message)).encode() + b" " + message)

    def close(self) -> None:
        self.sock.close()


class SyslogSender:
    def __init__(self, collector: Collector, ca_file: str = "", capacity: int = 10_000) -> None:
        self.collector = collector
        self.ca_file = ca_file
        self._queue: queue.Queue[bytes] = queue.Queue(capacity)
        self._dropped = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connection: _Connection | None = None
        self._backoff = 0.0
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    def send(self, message: bytes) -> None:
        if self.collector.scheme == "udp" and len(message) > MAX_DATAGRAM:
            log.warning(
                "audit collector %s: a %d-byte message does not fit in a datagram; "
                "dropped (the local audit log keeps it; use tcp:// or tls://)",
                self.collector,
                len(message),
            )
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                dropped = self._dropped
            if dropped == 1 or dropped % 1000 == 0:
                log.warning(
                    "audit collector %s: queue full, %d messages dropped", self.collector, dropped
                )

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        self._closing.set()
        self._thread.join(2.0)
        left = self._queue.unfinished_tasks
        if left:
            log.warning("audit collector %s: %d messages not sent at stop", self.collector, left)

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                message = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._deliver(message)
            self._queue.task_done()
        if self._connection is not None:
            self._connection.close()

    def _deliver(self, message: bytes) -> None:
        """Send one message, reconnecting once; after a failure wait longer each time."""
        while not self._closing.is_set():
            error = self._try(message)
            if error is not None:  # a dropped connection: reconnect once at once
                error = self._try(message)
            if error is None:
                if self._backoff:
                    log.info("audit collector %s reachable again", self.collector)
                self._backoff = 0.0
                return
            self._backoff = min(_MAX_BACKOFF, self._backoff * 2 or 1.0)
            log.warning(
                "audit collector %s unreachable (%s); %d messages waiting, retrying in %.0f s",
                self.collector,
                error,
                self._queue.qsize() + 1,
                self._backoff,
            )
            self._closing.wait(self._backoff)

    def _try(self, message: bytes) -> OSError | None:
        try:
            if self._connection is None:
                self._connection = _Connection(self.collector, self.ca_file)
            self._connection.send(message)
        except OSError as exc:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            return exc
        return None
