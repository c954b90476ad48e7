"""Which storage SOP classes and transfer syntaxes a node accepts, by proposing them.

Negotiation only: no object is sent. First every storage class pacsnode knows, each in
one context with the uncompressed syntaxes (every Storage SCP must take Implicit VR
Little Endian), then each class it accepted once per transfer syntax, alone, so that
its choice cannot hide a syntax. Contexts go in batches of at most 128, one
association at a time, released before the next: within any node's limits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from pacsnode.archive.uids import (
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    uid_name,
)
from pacsnode.dimse.scu import Peer, open_association
from pacsnode.doctor.report import Finding, Outcome
from pacsnode.net.pdu import ACCEPTANCE
from pacsnode.net.requestor import MAX_CONTEXTS, AssociationFailed, Proposal

STORAGE = "storage"
Held = Mapping[tuple[str, str], int]
"""Instances the archive holds per (SOP class, transfer syntax)."""


def _batches(proposals: Sequence[Proposal]) -> Iterator[Sequence[Proposal]]:
    for start in range(0, len(proposals), MAX_CONTEXTS):
        yield proposals[start : start + MAX_CONTEXTS]


def accepted(peer: Peer, proposals: Sequence[Proposal]) -> tuple[list[str | None], int]:
    """The transfer syntax accepted for each proposal (None: refused), and how many
    associations it took; a batch the node rejects outright counts as refused."""
    chosen: list[str | None] = []
    associations = 0
    for batch in _batches(proposals):
        associations += 1
        try:
            association = open_association(peer, batch)
        except AssociationFailed:
            chosen += [None] * len(batch)
            continue
        try:
            results = {result.id: result for result in association.accept.results}
            for number in range(len(batch)):
                result = results.get(1 + 2 * number)
                ok = result is not None and result.result == ACCEPTANCE
                chosen.append(result.transfer_syntax if ok and result else None)
        finally:
            association.release()
    return chosen, associations


def probe(peer: Peer) -> tuple[dict[str, tuple[str, ...]], list[Finding]]:
    """What the node accepts, class by class, and the findings saying so."""
    uncompressed = tuple(UNCOMPRESSED_TRANSFER_SYNTAXES)
    first = [Proposal(uid, uncompressed) for uid in STORAGE_SOP_CLASSES]
    chosen, associations = accepted(peer, first)
    classes = [uid for uid, syntax in zip(STORAGE_SOP_CLASSES, chosen, strict=True) if syntax]
    pairs = [(uid, ts) for uid in classes for ts in STORAGE_TRANSFER_SYNTAXES]
    answers, more = accepted(peer, [Proposal(uid, (ts,)) for uid, ts in pairs])
    table: dict[str, tuple[str, ...]] = {uid: () for uid in classes}
    for (uid, syntax), answer in zip(pairs, answers, strict=True):
        if answer == syntax:
            table[uid] += (syntax,)
    refused = [uid for uid in STORAGE_SOP_CLASSES if uid not in table]
    return table, [
        _classes_finding(table, refused, associations),
        _syntaxes_finding(table, more),
    ]


def _classes_finding(
    table: dict[str, tuple[str, ...]], refused: list[str], associations: int
) -> Finding:
    data = {"accepted": sorted(table), "refused": refused, "associations": associations}
    total = len(table) + len(refused)
    if not table:
        return Finding(
            STORAGE,
            "storage classes",
            Outcome.NOT_OFFERED,
            f"accepts none of the {total} storage SOP classes proposed",
            "it is no Storage SCP for us: nothing can be sent to it",
            data,
        )
    return Finding(
        STORAGE,
        "storage classes",
        Outcome.OK,
        f"accepts {len(table)} of the {total} storage SOP classes proposed",
        data=data,
    )


def _syntaxes_finding(table: dict[str, tuple[str, ...]], associations: int) -> Finding:
    """Which syntaxes it takes for every class it accepts, for some, for none."""
    if not table:
        return Finding(STORAGE, "transfer syntaxes", Outcome.SKIPPED, "no storage class accepted")
    counts = {
        ts: sum(ts in syntaxes for syntaxes in table.values()) for ts in STORAGE_TRANSFER_SYNTAXES
    }
    everywhere = [ts for ts, n in counts.items() if n == len(table)]
    somewhere = [ts for ts, n in counts.items() if 0 < n < len(table)]
    nowhere = [ts for ts, n in counts.items() if n == 0]
    data = {
        "accepted_by_all": everywhere,
        "accepted_by_some": somewhere,
        "refused_by_all": nowhere,
        "associations": associations,
    }
    total = len(STORAGE_TRANSFER_SYNTAXES)
    if len(everywhere) == total:
        summary = f"accepts all {total} transfer syntaxes proposed, for every class it accepts"
        return Finding(STORAGE, "transfer syntaxes", Outcome.OK, summary, data=data)
    few = len(everywhere) <= len(nowhere)
    parts = [
        f"accepts only {_names(everywhere)} for every class it accepts"
        if few
        else f"accepts {len(everywhere)} of {total} transfer syntaxes for every class it accepts"
    ]
    if somewhere:
        parts.append(f"{_names(somewhere)} for some classes only")
    if nowhere:
        parts.append(f"refuses the other {len(nowhere)}" if few else f"refuses {_names(nowhere)}")
    return Finding(STORAGE, "transfer syntaxes", Outcome.OK, "; ".join(parts), data=data)


def _names(uids: list[str]) -> str:
    return ", ".join(uid_name(uid) for uid in uids)


def held_finding(table: dict[str, tuple[str, ...]], held: Held | None) -> Finding:
    """What our archive holds that the node refuses: classes that cannot go at all,
    syntaxes that go decompressed."""
    if held is None:
        return Finding(STORAGE, "archive", Outcome.SKIPPED, "no archive here to compare with")
    if not table:
        return Finding(STORAGE, "archive", Outcome.SKIPPED, "it is no Storage SCP for us")
    if not held:
        return Finding(STORAGE, "archive", Outcome.OK, "the archive holds nothing yet")
    lost: dict[str, int] = {}
    converted: dict[str, int] = {}
    for (uid, syntax), count in held.items():
        if uid not in table:
            lost[uid] = lost.get(uid, 0) + count
        elif syntax not in table[uid]:
            converted[syntax] = converted.get(syntax, 0) + count
    data = {"refused_classes": lost, "converted_syntaxes": converted}
    if not lost and not converted:
        summary = f"accepts all {sum(held.values())} instances the archive holds, as stored"
        return Finding(STORAGE, "archive", Outcome.OK, summary, data=data)
    parts, hints = [], []
    if lost:
        names = ", ".join(f"{uid_name(uid)}: {n}" for uid, n in lost.items())
        parts.append(f"refuses {sum(lost.values())} instances the archive holds: {names}")
        hints.append("add their SOP classes to those it accepts, or they cannot be sent to it")
    if converted:
        names = ", ".join(f"{uid_name(ts)}: {n}" for ts, n in converted.items())
        parts.append(f"{sum(converted.values())} instances go only decompressed ({names})")
        hints.append("let it accept those transfer syntaxes, and they go as stored")
    outcome = Outcome.FAILED if lost else Outcome.WARNING
    return Finding(STORAGE, "archive", outcome, "; ".join(parts), "; ".join(hints), data)
