"""Protocol data units of the DICOM upper layer (PS3.8 section 9).

Each PDU is a 6-byte header (type, reserved, big-endian length) and a body. The
association PDUs are decoded into dataclasses and encoded back; P-DATA-TF bodies
are left to :mod:`pacsnode.net.pdata`, which reads their value items in place.
Every decoder raises :class:`PduError` on anything malformed, never another error,
so that a hostile peer costs only its own association.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07
PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

HEADER = struct.Struct(">BxL")
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
PROTOCOL_VERSION = 1

# Items of the variable field (PS3.8 9.3.2 and Annex D).
_APPLICATION_CONTEXT = 0x10
_PRESENTATION_CONTEXT_RQ = 0x20
_PRESENTATION_CONTEXT_AC = 0x21
_ABSTRACT_SYNTAX = 0x30
_TRANSFER_SYNTAX = 0x40
_USER_INFORMATION = 0x50
_MAXIMUM_LENGTH = 0x51
_IMPLEMENTATION_CLASS_UID = 0x52
_ASYNCHRONOUS_OPERATIONS = 0x53
_ROLE_SELECTION = 0x54
_IMPLEMENTATION_VERSION_NAME = 0x55
_EXTENDED_NEGOTIATION = 0x56
_COMMON_EXTENDED_NEGOTIATION = 0x57
_USER_IDENTITY_RQ = 0x58
_USER_IDENTITY_AC = 0x59

# Presentation context results (PS3.8 Table 9-18).
ACCEPTANCE = 0
USER_REJECTION = 1
NO_REASON = 2
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

_ITEM = struct.Struct(">BxH")
_SHORT = struct.Struct(">H")
_LONG = struct.Struct(">L")


class PduError(ValueError):
    """A PDU that does not follow PS3.8; the association is aborted."""


@dataclass(frozen=True)
class ProposedContext:
    """A presentation context as the requestor proposes it."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class ContextResult:
    """The acceptor's answer to one proposed context."""

    id: int
    result: int
    transfer_syntax: str = ""


@dataclass(frozen=True)
class UserIdentity:
    """User Identity negotiation (PS3.7 D.3.3.7): type 1 user name, 2 with passcode,
    3 Kerberos, 4 SAML, 5 JWT."""

    kind: int
    response_requested: bool
    primary: bytes
    secondary: bytes = b""


@dataclass
class UserInformation:
    max_length: int = 0
    """Largest P-DATA-TF variable field the sender receives; 0 is unlimited."""
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    asynchronous_operations: tuple[int, int] | None = None
    """Maximum operations invoked and performed; absent means one of each."""
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    """SOP class → (SCU role, SCP role)."""
    extended: dict[str, bytes] = field(default_factory=dict)
    """SOP class → service class application information."""
    common_extended: list[bytes] = field(default_factory=list)
    """SOP Class Common Extended Negotiation items, kept as received."""
    user_identity: UserIdentity | None = None
    identity_response: bytes | None = None
    """The acceptor's server response to a user identity that asked for one."""


@dataclass
class AssociateRequest:
    called_ae: str
    calling_ae: str
    contexts: list[ProposedContext]
    user: UserInformation
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = PROTOCOL_VERSION


@dataclass
class AssociateAccept:
    called_ae: str
    calling_ae: str
    results: list[ContextResult]
    user: UserInformation
    application_context: str = APPLICATION_CONTEXT


REJECT_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_REASONS = {  # PS3.8 Table 9-21, by result source and reason/diagnostic
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
class AssociateReject:
    result: int
    """1 rejected-permanent, 2 rejected-transient."""
    source: int
    """1 service user, 2 service provider (ACSE), 3 service provider (presentation)."""
    reason: int

    def __str__(self) -> str:
        result = REJECT_RESULTS.get(self.result, f"result {self.result}")
        reason = REJECT_REASONS.get((self.source, self.reason), f"reason {self.reason}")
        return f"{result}, {reason}"


@dataclass(frozen=True)
class Abort:
    source: int = 0
    """0 service user, 2 service provider."""
    reason: int = 0


# --- encoding ------------------------------------------------------------------------


def frame(pdu_type: int, body: bytes) -> bytes:
    return HEADER.pack(pdu_type, len(body)) + body


def _item(item_type: int, value: bytes) -> bytes:
    return _ITEM.pack(item_type, len(value)) + value


def _ae(title: str) -> bytes:
    encoded = title.encode("ascii", "replace")[:16]
    return encoded.ljust(16, b" ")


def _uid(value: str) -> bytes:
    return value.encode("ascii")


def _user_information(user: UserInformation, accept: bool) -> bytes:
    items = [_item(_MAXIMUM_LENGTH, _LONG.pack(user.max_length))]
    if user.implementation_class_uid:
        items.append(_item(_IMPLEMENTATION_CLASS_UID, _uid(user.implementation_class_uid)))
    if user.asynchronous_operations is not None:
        invoked, performed = user.asynchronous_operations
        items.append(_item(_ASYNCHRONOUS_OPERATIONS, struct.pack(">HH", invoked, performed)))
    for sop_class, (scu, scp) in user.roles.items():
        uid = _uid(sop_class)
        items.append(_item(_ROLE_SELECTION, _SHORT.pack(len(uid)) + uid + bytes((scu, scp))))
    if user.implementation_version_name:
        name = user.implementation_version_name.encode("ascii", "replace")[:16]
        items.append(_item(_IMPLEMENTATION_VERSION_NAME, name))
    for sop_class, info in user.extended.items():
        uid = _uid(sop_class)
        items.append(_item(_EXTENDED_NEGOTIATION, _SHORT.pack(len(uid)) + uid + info))
    if not accept:
        items.extend(_item(_COMMON_EXTENDED_NEGOTIATION, raw) for raw in user.common_extended)
    if user.user_identity is not None and not accept:
        identity = user.user_identity
        items.append(
            _item(
                _USER_IDENTITY_RQ,
                bytes((identity.kind, int(identity.response_requested)))
                + _SHORT.pack(len(identity.primary))
                + identity.primary
                + _SHORT.pack(len(identity.secondary))
                + identity.secondary,
            )
        )
    if user.identity_response is not None and accept:
        response = user.identity_response
        items.append(_item(_USER_IDENTITY_AC, _SHORT.pack(len(response)) + response))
    return _item(_USER_INFORMATION, b"".join(items))


def _fixed(called: str, calling: str) -> bytes:
    return _SHORT.pack(PROTOCOL_VERSION) + b"\0\0" + _ae(called) + _ae(calling) + b"\0" * 32


def encode_request(request: AssociateRequest) -> bytes:
    contexts = b"".join(
        _item(
            _PRESENTATION_CONTEXT_RQ,
            bytes((context.id, 0, 0, 0))
            + _item(_ABSTRACT_SYNTAX, _uid(context.abstract_syntax))
            + b"".join(_item(_TRANSFER_SYNTAX, _uid(ts)) for ts in context.transfer_syntaxes),
        )
        for context in request.contexts
    )
    body = (
        _fixed(request.called_ae, request.calling_ae)
        + _item(_APPLICATION_CONTEXT, _uid(request.application_context))
        + contexts
        + _user_information(request.user, accept=False)
    )
    return frame(A_ASSOCIATE_RQ, body)


def encode_accept(accept: AssociateAccept) -> bytes:
    results = b"".join(
        _item(
            _PRESENTATION_CONTEXT_AC,
            bytes((result.id, 0, result.result, 0))
            + _item(_TRANSFER_SYNTAX, _uid(result.transfer_syntax) if result.result == 0 else b""),
        )
        for result in accept.results
    )
    body = (
        _fixed(accept.called_ae, accept.calling_ae)
        + _item(_APPLICATION_CONTEXT, _uid(accept.application_context))
        + results
        + _user_information(accept.user, accept=True)
    )
    return frame(A_ASSOCIATE_AC, body)


def encode_reject(reject: AssociateReject) -> bytes:
    return frame(A_ASSOCIATE_RJ, bytes((0, reject.result, reject.source, reject.reason)))


def encode_abort(abort: Abort) -> bytes:
    return frame(A_ABORT, bytes((0, 0, abort.source, abort.reason)))


RELEASE_RQ = frame(A_RELEASE_RQ, b"\0\0\0\0")
RELEASE_RP = frame(A_RELEASE_RP, b"\0\0\0\0")


# --- decoding ------------------------------------------------------------------------


def _items(body: memoryview, start: int) -> list[tuple[int, memoryview]]:
    """The (type, value) items from ``start`` to the end of ``body``."""
    items = []
    pos = start
    while pos < len(body):
        if len(body) - pos < 4:
            raise PduError("an item header is cut short")
        item_type, length = _ITEM.unpack_from(body, pos)
        pos += 4
        if pos + length > len(body):
            raise PduError(f"item 0x{item_type:02X} is longer than its PDU")
        items.append((item_type, body[pos : pos + length]))
        pos += length
    return items


def _text(value: memoryview) -> str:
    """A UID or AE title: ASCII, padding and NULs dropped."""
    try:
        return bytes(value).decode("ascii").strip(" \0")
    except UnicodeDecodeError as exc:
        raise PduError("a UID or AE title is not ASCII") from exc


def _check_fixed(body: memoryview) -> tuple[str, str]:
    if len(body) < 68:
        raise PduError("shorter than its fixed fields")
    return _ae_title(body[4:20], "Called AE Title"), _ae_title(body[20:36], "Calling AE Title")


def _ae_title(value: memoryview, name: str) -> str:
    """An AE title: the default repertoire without backslash or control characters
    (PS3.5 6.2); leading and trailing spaces are not significant."""
    raw = bytes(value)
    if any(byte < 0x20 or byte > 0x7E or byte == 0x5C for byte in raw.rstrip(b"\0")):
        raise PduError(f"the {name} {raw!r} holds a backslash or control characters")
    title = raw.decode("ascii").strip(" \0")
    if not title:
        raise PduError(f"the {name} is empty")
    return title


def decode_request(body: memoryview) -> AssociateRequest:
    called, calling = _check_fixed(body)
    version = _SHORT.unpack_from(body, 0)[0]
    application_context = ""
    contexts: list[ProposedContext] = []
    user = UserInformation()
    for item_type, value in _items(body, 68):
        if item_type == _APPLICATION_CONTEXT:
            application_context = _text(value)
        elif item_type == _PRESENTATION_CONTEXT_RQ:
            contexts.append(_proposed(value))
        elif item_type == _USER_INFORMATION:
            user = _decode_user(value)
    if not application_context:
        raise PduError("A-ASSOCIATE-RQ names no application context")
    return AssociateRequest(called, calling, contexts, user, application_context, version)


def _proposed(value: memoryview) -> ProposedContext:
    if len(value) < 4:
        raise PduError("a presentation context item is cut short")
    abstract = ""
    syntaxes = []
    for item_type, sub in _items(value, 4):
        if item_type == _ABSTRACT_SYNTAX:
            abstract = _text(sub)
        elif item_type == _TRANSFER_SYNTAX:
            syntaxes.append(_text(sub))
    return ProposedContext(value[0], abstract, tuple(syntaxes))


def decode_accept(body: memoryview) -> AssociateAccept:
    called, calling = _check_fixed(body)
    application_context = ""
    results = []
    user = UserInformation()
    for item_type, value in _items(body, 68):
        if item_type == _APPLICATION_CONTEXT:
            application_context = _text(value)
        elif item_type == _PRESENTATION_CONTEXT_AC:
            if len(value) < 4:
                raise PduError("a presentation context result is cut short")
            syntax = next((_text(v) for t, v in _items(value, 4) if t == _TRANSFER_SYNTAX), "")
            results.append(ContextResult(value[0], value[2], syntax))
        elif item_type == _USER_INFORMATION:
            user = _decode_user(value)
    return AssociateAccept(called, calling, results, user, application_context)


def decode_reject(body: memoryview) -> AssociateReject:
    if len(body) < 4:
        raise PduError("A-ASSOCIATE-RJ is cut short")
    return AssociateReject(body[1], body[2], body[3])


def decode_abort(body: memoryview) -> Abort:
    if len(body) < 4:
        raise PduError("A-ABORT is cut short")
    return Abort(body[2], body[3])


def _decode_user(value: memoryview) -> UserInformation:
    user = UserInformation()
    for item_type, sub in _items(value, 0):
        try:
            _decode_user_item(user, item_type, sub)
        except (struct.error, IndexError) as exc:
            raise PduError(f"user information item 0x{item_type:02X} is malformed") from exc
    return user


def _decode_user_item(user: UserInformation, item_type: int, sub: memoryview) -> None:
    if item_type == _MAXIMUM_LENGTH:
        user.max_length = _LONG.unpack_from(sub)[0]
    elif item_type == _IMPLEMENTATION_CLASS_UID:
        user.implementation_class_uid = _text(sub)
    elif item_type == _IMPLEMENTATION_VERSION_NAME:
        user.implementation_version_name = _text(sub)
    elif item_type == _ASYNCHRONOUS_OPERATIONS:
        user.asynchronous_operations = struct.unpack_from(">HH", sub)
    elif item_type == _ROLE_SELECTION:
        uid, rest = _prefixed(sub)
        user.roles[uid] = (bool(rest[0]), bool(rest[1]))
    elif item_type == _EXTENDED_NEGOTIATION:
        uid, rest = _prefixed(sub)
        user.extended[uid] = bytes(rest)
    elif item_type == _COMMON_EXTENDED_NEGOTIATION:
        user.common_extended.append(bytes(sub))
    elif item_type == _USER_IDENTITY_RQ:
        primary_length = _SHORT.unpack_from(sub, 2)[0]
        primary = bytes(sub[4 : 4 + primary_length])
        secondary_length = _SHORT.unpack_from(sub, 4 + primary_length)[0]
        start = 6 + primary_length
        secondary = bytes(sub[start : start + secondary_length])
        user.user_identity = UserIdentity(sub[0], bool(sub[1]), primary, secondary)
    elif item_type == _USER_IDENTITY_AC:
        length = _SHORT.unpack_from(sub)[0]
        user.identity_response = bytes(sub[2 : 2 + length])


def _prefixed(sub: memoryview) -> tuple[str, memoryview]:
    """A UID with its 2-byte length, and what follows it."""
    length = _SHORT.unpack_from(sub)[0]
    if 2 + length > len(sub):
        raise PduError("a UID is longer than its item")
    return _text(sub[2 : 2 + length]), sub[2 + length :]
