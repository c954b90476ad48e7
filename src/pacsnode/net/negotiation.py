"""Presentation context negotiation as the acceptor (PS3.8 9.3.2, PS3.7 D.3.3).

For each proposed context: the abstract syntax must be one we serve, and one of the
proposed transfer syntaxes one we accept for it. Which one is chosen is a setting:

* ``proposer`` (the default): the first in the proposer's order that we accept. A
  modality proposing [JPEG 2000, Explicit VR LE] sends JPEG 2000, stored as received;
  SIDICOM QR's [ELE, ILE, EBE] gets ELE and CDRClient's [ILE, JPEG…] gets ILE
  (digest-000_004 part C item 7, B7 item 8).
* ``ours``: the first in our own order that the proposer offered.

SCP/SCU role selection follows PS3.7 D.3.3.4: a role is granted when the requestor
proposed it and we allow it for that SOP class; a context granting neither role is
refused. Extended negotiation replies come from a callback per SOP class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pacsnode.config import SyntaxChoice
from pacsnode.net.association import Context
from pacsnode.net.pdu import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTANCE,
    NO_REASON,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    USER_REJECTION,
    AssociateRequest,
    ContextResult,
    UserInformation,
)


@dataclass(frozen=True)
class Offer:
    """What we accept for one abstract syntax, and which roles a requestor may take."""

    transfer_syntaxes: tuple[str, ...]
    requestor_may_be_scu: bool = True
    requestor_may_be_scp: bool = False


@dataclass
class Negotiated:
    results: list[ContextResult]
    contexts: dict[int, Context]
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    extended: dict[str, bytes] = field(default_factory=dict)


ExtendedReply = Callable[[str, bytes], bytes | None]


def negotiate(
    request: AssociateRequest,
    offers: Mapping[str, Offer],
    choice: SyntaxChoice = "proposer",
    extended: ExtendedReply | None = None,
) -> Negotiated:
    negotiated = Negotiated([], {})
    seen: set[int] = set()
    for proposed in request.contexts:
        offer = offers.get(proposed.abstract_syntax)
        if proposed.id in seen or not proposed.id % 2:
            negotiated.results.append(ContextResult(proposed.id, NO_REASON))
            continue
        seen.add(proposed.id)
        if offer is None:
            negotiated.results.append(ContextResult(proposed.id, ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        syntax = choose(proposed.transfer_syntaxes, offer.transfer_syntaxes, choice)
        if syntax is None:
            negotiated.results.append(ContextResult(proposed.id, TRANSFER_SYNTAXES_NOT_SUPPORTED))
            continue
        scu, scp = _roles(request.user, proposed.abstract_syntax, offer, negotiated)
        if not (scu or scp):
            negotiated.results.append(ContextResult(proposed.id, USER_REJECTION))
            continue
        negotiated.results.append(ContextResult(proposed.id, ACCEPTANCE, syntax))
        negotiated.contexts[proposed.id] = Context(
            proposed.id, proposed.abstract_syntax, syntax, scu, scp
        )
    if extended is not None:
        accepted = {context.abstract_syntax for context in negotiated.contexts.values()}
        for sop_class, info in request.user.extended.items():
            reply = extended(sop_class, info) if sop_class in accepted else None
            if reply is not None:
                negotiated.extended[sop_class] = reply
    return negotiated


def choose(proposed: tuple[str, ...], ours: tuple[str, ...], choice: SyntaxChoice) -> str | None:
    """The transfer syntax of a context, by the configured rule."""
    if choice == "proposer":
        return next((syntax for syntax in proposed if syntax in ours), None)
    return next((syntax for syntax in ours if syntax in proposed), None)


def _roles(
    user: UserInformation, sop_class: str, offer: Offer, negotiated: Negotiated
) -> tuple[bool, bool]:
    """The roles the requestor gets: as proposed and allowed, default SCU only."""
    proposed = user.roles.get(sop_class)
    if proposed is None:
        return offer.requestor_may_be_scu, False
    granted = (
        proposed[0] and offer.requestor_may_be_scu,
        proposed[1] and offer.requestor_may_be_scp,
    )
    negotiated.roles[sop_class] = granted
    return granted
