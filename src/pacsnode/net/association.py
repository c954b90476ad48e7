"""An established association: DIMSE messages over presentation contexts (PS3.8 9.3.5).

One thread owns an association from establishment to release. It receives a message
by reading P-DATA-TF PDUs until the command set, and the data set if one follows,
are complete; the data set goes to a sink the receiver chooses (a spool file for
C-STORE, memory otherwise) as its fragments arrive. It sends a message as PDUs no
longer than the peer's maximum, in bursts of buffers written together.

A peer may send a C-CANCEL while we answer its request; :meth:`Association.cancelled`
looks for one between responses without waiting.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pacsnode.net import commands
from pacsnode.net.commands import Command, CommandError
from pacsnode.net.pdu import (
    A_ABORT,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    HEADER,
    P_DATA_TF,
    PDU_NAMES,
    RELEASE_RP,
    RELEASE_RQ,
    Abort,
    AssociateAccept,
    AssociateRequest,
    PduError,
    decode_abort,
    encode_abort,
)
from pacsnode.net.transport import Buffer, ConnectionClosed, TimedOut, Transport

log = logging.getLogger("pacsnode.net")

_PDV = struct.Struct(">LBB")
_COMMAND, _LAST = 0x01, 0x02
_BURST = 4 * 1024 * 1024
LARGEST_PDU = 128 * 1024
"""The largest P-DATA-TF we send, whatever the peer allows (or if it announced no
maximum): pynetdicom and other receivers in managed languages copy a PDU as it comes
in, so above this they spend more in copies than they save in headers, and below it
in headers (C-MOVE of 300 CT to a pynetdicom Storage SCP: 250 instances/s in 1 MiB
PDUs, 280 in 256 KiB, 310 in 128 KiB and 64 KiB, 270 in 16 KiB)."""

# A-ABORT sources and reasons (PS3.8 Table 9-26).
SERVICE_USER, SERVICE_PROVIDER = 0, 2
REASON_NOT_SPECIFIED, UNEXPECTED_PDU, INVALID_PDU_PARAMETER = 0, 2, 6


class Aborted(ConnectionError):
    """The peer aborted the association, or we did after a protocol error."""

    def __init__(self, detail: str, abort: Abort | None = None) -> None:
        super().__init__(detail)
        self.abort = abort


@dataclass(frozen=True)
class Context:
    """An accepted presentation context and who may invoke its operations."""

    id: int
    abstract_syntax: str
    transfer_syntax: str
    requestor_scu: bool = True
    requestor_scp: bool = False


class Sink(Protocol):
    """Where a received data set goes as its fragments arrive."""

    def write(self, fragment: memoryview) -> None: ...

    def finish(self) -> None: ...

    def abandon(self) -> None: ...


class MemorySink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, fragment: memoryview) -> None:
        self.data += fragment

    def finish(self) -> None:
        pass

    def abandon(self) -> None:
        self.data.clear()


SinkFactory = Callable[[Command, Context], Sink | None]


@dataclass
class Message:
    context: Context
    command: Command
    sink: Sink | None = None

    @property
    def field(self) -> int:
        return int(self.command["CommandField"])

    @property
    def data(self) -> bytes | None:
        """The data set, when it was received into memory."""
        return bytes(self.sink.data) if isinstance(self.sink, MemorySink) else None

    @property
    def is_response(self) -> bool:
        return bool(self.field & 0x8000)


class Release:
    """The peer asked to release the association (A-RELEASE-RQ)."""


RELEASE = Release()


@dataclass
class _Incoming:
    """A message being assembled from PDVs."""

    command_bytes: bytearray = field(default_factory=bytearray)
    context: Context | None = None
    command: Command | None = None
    sink: Sink | None = None


class Association:
    def __init__(
        self,
        transport: Transport,
        contexts: dict[int, Context],
        request: AssociateRequest,
        accept: AssociateAccept,
        *,
        is_requestor: bool,
        idle_timeout: float | None,
    ) -> None:
        self.transport = transport
        self.contexts = contexts
        self.request = request
        self.accept = accept
        self.is_requestor = is_requestor
        self.idle_timeout = idle_timeout
        peer_max = (accept if is_requestor else request).user.max_length
        self.peer_max_pdu = peer_max
        self.fragment = min(peer_max or LARGEST_PDU, LARGEST_PDU) - 6
        self.established = True
        self._next_id = 0
        self._pending: deque[tuple[int, int, memoryview]] = deque()
        self._queued: deque[Message | Release] = deque()
        self._cancelled: set[int] = set()

    # --- who ---------------------------------------------------------------------

    @property
    def calling_ae(self) -> str:
        return self.request.calling_ae

    @property
    def called_ae(self) -> str:
        return self.request.called_ae

    @property
    def peer_ae(self) -> str:
        return self.request.called_ae if self.is_requestor else self.request.calling_ae

    @property
    def local_ae(self) -> str:
        return self.request.calling_ae if self.is_requestor else self.request.called_ae

    @property
    def peer_address(self) -> tuple[str, int]:
        return self.transport.peer

    def __str__(self) -> str:
        host, port = self.peer_address
        return f"{self.calling_ae} -> {self.called_ae} ({host}:{port})"

    def next_message_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    @property
    def last_message_id(self) -> int:
        """The Message ID of our latest request (what a C-CANCEL names)."""
        return self._next_id

    def may_invoke(self, context: Context) -> bool:
        """Whether we may send requests on ``context``: as its SCU when we asked for the
        association, as its SCP-role partner when the peer did (the C-STOREs of a C-GET,
        a storage commitment report)."""
        return context.requestor_scu if self.is_requestor else context.requestor_scp

    def context_for(self, abstract_syntax: str, syntaxes: Sequence[str] = ()) -> Context | None:
        """A context on which we may invoke ``abstract_syntax``, in one of ``syntaxes``
        if given, in the order given."""
        usable = [
            context
            for context in self.contexts.values()
            if context.abstract_syntax == abstract_syntax and self.may_invoke(context)
        ]
        for syntax in syntaxes:
            found = next((c for c in usable if c.transfer_syntax == syntax), None)
            if found is not None:
                return found
        return None if syntaxes else next(iter(usable), None)

    # --- sending -----------------------------------------------------------------

    def send(
        self,
        context_id: int,
        command: Command,
        data: bytes | Sequence[Buffer] | None = None,
        before: Sequence[Buffer] = (),
    ) -> None:
        """Send one message; ``data`` is the encoded data set, whole or in chunks;
        ``before``, a message :meth:`encoded` already, goes out in the same write."""
        kind = commands.NO_DATA_SET if data is None else commands.HAS_DATA_SET
        self.send_encoded(
            context_id, commands.encode({**command, "CommandDataSetType": kind}), data, before
        )

    def send_encoded(
        self,
        context_id: int,
        encoded: bytes,
        data: bytes | Sequence[Buffer] | None = None,
        before: Sequence[Buffer] = (),
    ) -> None:
        """Send a message whose command set is already encoded (and says whether a data
        set follows): a C-FIND sends the same pending command for every match."""
        small = self.encoded(context_id, encoded, data)
        if small is not None:
            self.transport.send([*before, *small])
            return
        if before:
            self.transport.send(before)
        chunks: Sequence[Buffer] = [data] if isinstance(data, bytes | bytearray) else data or []
        command = list(self._pdus(context_id, [encoded], _COMMAND))
        self._send_data(context_id, chunks, command)

    def encoded(
        self, context_id: int, encoded: bytes, data: bytes | Sequence[Buffer] | None = None
    ) -> list[Buffer] | None:
        """A small message's PDUs: a command alone, or with a data set that fits in the
        same P-DATA-TF (a C-FIND answer); else ``None``."""
        if data is None:
            return list(self._pdus(context_id, [encoded], _COMMAND))
        chunks: Sequence[Buffer] = [data] if isinstance(data, bytes | bytearray) else data
        total = sum(len(chunk) for chunk in chunks)
        if len(encoded) + total + 12 <= self.fragment + 6:
            return self._together(context_id, encoded, chunks, total)
        return None

    def _together(
        self, context_id: int, command: bytes, chunks: Sequence[Buffer], total: int
    ) -> list[Buffer]:
        """Command and data set as two PDVs of one P-DATA-TF."""
        body = 12 + len(command) + total
        return [
            HEADER.pack(P_DATA_TF, body),
            _PDV.pack(len(command) + 2, context_id, _COMMAND | _LAST),
            command,
            _PDV.pack(total + 2, context_id, _LAST),
            *chunks,
        ]

    def _send_data(self, context_id: int, chunks: Sequence[Buffer], command: list[Buffer]) -> None:
        """The command's PDUs and the data set's, written in bursts: the command goes
        out with the first of the data, never alone."""
        burst = command
        size = sum(len(piece) for piece in command)
        for piece in self._pdus(context_id, chunks, 0):
            burst.append(piece)
            size += len(piece)
            if size >= _BURST:
                self.transport.send(burst)
                burst, size = [], 0
        if burst or not chunks:
            self.transport.send(burst)

    def _pdus(self, context_id: int, chunks: Sequence[Buffer], kind: int) -> Iterator[Buffer]:
        """PDU and PDV headers followed by slices of ``chunks``, fragment by fragment."""
        total = sum(len(chunk) for chunk in chunks)
        if total == 0:
            yield HEADER.pack(P_DATA_TF, 6) + _PDV.pack(2, context_id, kind | _LAST)
            return
        views = (memoryview(chunk).cast("B") for chunk in chunks if len(chunk))
        current = next(views)
        offset = 0
        left = total
        while left:
            size = min(self.fragment, left)
            left -= size
            control = kind | (_LAST if not left else 0)
            yield HEADER.pack(P_DATA_TF, size + 6) + _PDV.pack(size + 2, context_id, control)
            needed = size
            while needed:
                if offset == len(current):
                    current, offset = next(views), 0
                take = min(needed, len(current) - offset)
                yield current[offset : offset + take]
                offset += take
                needed -= take

    # --- receiving ---------------------------------------------------------------

    def receive(
        self, sink_for: SinkFactory | None = None, timeout: float | None = None
    ) -> Message | Release:
        """The next complete message, or :data:`RELEASE` when the peer asks to end."""
        if self._queued:
            return self._queued.popleft()
        incoming = _Incoming()
        try:
            while True:
                if not self._pending:
                    waiting = incoming.context is None and not incoming.command_bytes
                    if self._read(timeout if waiting else None) is RELEASE:
                        return RELEASE
                    continue
                message = self._take(incoming, *self._pending.popleft(), sink_for)
                if message is not None:
                    return message
        except BaseException:
            if incoming.sink is not None:
                incoming.sink.abandon()
            raise

    def _read(self, timeout: float | None) -> Release | None:
        """Read one PDU: queue its PDVs, or report a release; raise on anything else."""
        try:
            pdu_type, body = self.transport.read_pdu(
                timeout if timeout is not None else self.idle_timeout
            )
            if pdu_type == P_DATA_TF:
                self._pending.extend(pdv_items(body))
                return None
        except PduError as exc:
            self.abort(SERVICE_PROVIDER, INVALID_PDU_PARAMETER)
            raise Aborted(f"invalid PDU: {exc}") from exc
        except TimedOut as exc:
            self.abort(SERVICE_PROVIDER, REASON_NOT_SPECIFIED)
            raise Aborted(str(exc)) from exc
        except ConnectionClosed:
            self.established = False
            self.transport.close()
            raise
        if pdu_type == A_RELEASE_RQ:
            return RELEASE
        if pdu_type == A_ABORT:
            self.established = False
            self.transport.close()
            abort = decode_abort(body)
            raise Aborted(f"the peer aborted (source {abort.source}, reason {abort.reason})", abort)
        self.abort(SERVICE_PROVIDER, UNEXPECTED_PDU)
        raise Aborted(f"unexpected {PDU_NAMES.get(pdu_type, pdu_type)} on an association")

    def _take(
        self,
        incoming: _Incoming,
        context_id: int,
        control: int,
        fragment: memoryview,
        sink_for: SinkFactory | None,
    ) -> Message | None:
        context = self.contexts.get(context_id)
        if context is None or (incoming.context and incoming.context.id != context_id):
            self.abort(SERVICE_PROVIDER, INVALID_PDU_PARAMETER)
            raise Aborted(f"a fragment on presentation context {context_id}, not accepted")
        incoming.context = context
        if incoming.command is None:
            if not control & _COMMAND:
                self.abort(SERVICE_PROVIDER, UNEXPECTED_PDU)
                raise Aborted("a data set fragment where a command was due")
            incoming.command_bytes += fragment
            if not control & _LAST:
                return None
            try:
                incoming.command = commands.decode(incoming.command_bytes)
            except CommandError as exc:
                self.abort(SERVICE_PROVIDER, INVALID_PDU_PARAMETER)
                raise Aborted(f"command set does not decode: {exc}") from exc
            if not commands.has_data_set(incoming.command):
                return Message(context, incoming.command)
            incoming.sink = (sink_for(incoming.command, context) if sink_for else None) or (
                MemorySink()
            )
            return None
        if control & _COMMAND:
            self.abort(SERVICE_PROVIDER, UNEXPECTED_PDU)
            raise Aborted("a command fragment inside a data set")
        assert incoming.sink is not None
        incoming.sink.write(fragment)
        if not control & _LAST:
            return None
        incoming.sink.finish()
        return Message(context, incoming.command, incoming.sink)

    def cancelled(self, message_id: int) -> bool:
        """Whether a C-CANCEL for ``message_id`` arrived; reads only what is there."""
        while message_id not in self._cancelled and self.transport.readable():
            message = self.receive()
            if isinstance(message, Message) and message.field == commands.C_CANCEL_RQ:
                self._cancelled.add(int(message.command.get("MessageIDBeingRespondedTo", 0)))
            else:
                self._queued.append(message)
        return message_id in self._cancelled

    def responses(
        self,
        message_id: int,
        on_request: Callable[[Message], None] | None = None,
        sink_for: SinkFactory | None = None,
    ) -> Iterator[Message]:
        """The responses to our request ``message_id``, as they arrive (the caller
        stops at the final one). Requests the peer sends meanwhile (the C-STOREs of a
        C-GET, a storage commitment report) go to ``on_request``."""
        while True:
            message = self.receive(sink_for)
            if isinstance(message, Release):
                self.abort(SERVICE_PROVIDER, UNEXPECTED_PDU)
                raise Aborted("the peer asked to release while our request was open")
            if message.field == commands.C_CANCEL_RQ:
                self._cancelled.add(int(message.command.get("MessageIDBeingRespondedTo", 0)))
                continue
            if not message.is_response:
                if on_request is None:
                    log.warning("%s from %s ignored", commands.describe(message.command), self)
                else:
                    on_request(message)
                continue
            if message.command.get("MessageIDBeingRespondedTo") == message_id:
                yield message

    # --- ending ------------------------------------------------------------------

    def answer_release(self) -> None:
        """Confirm the peer's A-RELEASE-RQ; the association is over (the caller closes
        the connection once it has done its bookkeeping)."""
        with contextlib.suppress(ConnectionClosed):
            self.transport.send([RELEASE_RP])
        self.established = False

    def release(self, timeout: float = 30.0) -> None:
        """Ask the peer to release and wait for its answer (requestor side)."""
        if not self.established:
            return
        try:
            self.transport.send([RELEASE_RQ])
            while True:
                pdu_type, _ = self.transport.read_pdu(timeout)
                if pdu_type in (A_RELEASE_RP, A_ABORT):
                    break
                if pdu_type == A_RELEASE_RQ:  # both asked at once (PS3.8 7.2.2)
                    self.transport.send([RELEASE_RP])
        except (ConnectionClosed, PduError) as exc:
            log.debug("release of %s: %s", self, exc)
        self.established = False
        self.transport.close()

    def abort(self, source: int = SERVICE_USER, reason: int = REASON_NOT_SPECIFIED) -> None:
        if self.transport.closed:
            return
        with contextlib.suppress(ConnectionClosed):
            self.transport.send([encode_abort(Abort(source, reason))])
        self.established = False
        self.transport.close()


def pdv_items(body: memoryview) -> list[tuple[int, int, memoryview]]:
    """The presentation data value items of a P-DATA-TF body: (context ID, message
    control header, fragment)."""
    pos = 0
    items = []
    while pos < len(body):
        if len(body) - pos < 6:
            raise PduError("P-DATA-TF: a PDV item is cut short")
        length, context_id, control = _PDV.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > len(body):
            raise PduError(f"P-DATA-TF: a PDV item of {length} bytes does not fit its PDU")
        items.append((context_id, control, body[pos + 6 : pos + 4 + length]))
        pos += 4 + length
    if not items:
        raise PduError("P-DATA-TF: no PDV item")
    return items
