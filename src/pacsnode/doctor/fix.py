"""``doctor --fix``: what was learnt, written into our remote AE entry for the node.

``offers`` becomes the services that answered, so that a retrieve uses C-GET where
the node does not send C-MOVE results to us, and nothing asks for what it does not
offer. ``transfer_syntaxes`` (what routing converts to, best first) is never made to
name a syntax the node refuses: a list already set keeps the syntaxes it accepts;
an empty one (objects go as stored) stays empty unless the node refuses a syntax the
archive holds objects in, and then names the syntaxes pacsnode converts to losslessly
that the node accepts for every class, compressed ones first, so that those objects
are converted to one it takes rather than only decompressed.
"""

from __future__ import annotations

import dataclasses

from pacsnode.archive.transcoding import DECODED, LOSSLESS_TARGETS
from pacsnode.archive.uids import STORAGE_TRANSFER_SYNTAXES
from pacsnode.config import RemoteAE
from pacsnode.doctor.report import Learnt
from pacsnode.doctor.storage import Held


def accepted_everywhere(learnt: Learnt) -> tuple[str, ...]:
    """The syntaxes accepted for every storage class accepted, in our order."""
    tables = list(learnt.storage.values())
    if not tables:
        return ()
    return tuple(ts for ts in STORAGE_TRANSFER_SYNTAXES if all(ts in t for t in tables))


def learnt_syntaxes(current: tuple[str, ...], learnt: Learnt, held: Held | None) -> tuple[str, ...]:
    everywhere = accepted_everywhere(learnt)
    if current:
        return tuple(ts for ts in current if ts in everywhere)
    refused = any(
        uid in learnt.storage and syntax not in learnt.storage[uid] for uid, syntax in held or {}
    )
    if not refused:
        return ()
    return tuple(ts for ts in (*LOSSLESS_TARGETS, *DECODED) if ts in everywhere)


def fixed(remote: RemoteAE, learnt: Learnt, held: Held | None) -> RemoteAE:
    """The remote AE entry with what was learnt; ``offers`` is kept when nothing
    answered (an empty list would mean every service)."""
    return dataclasses.replace(
        remote,
        offers=learnt.offers or remote.offers,
        transfer_syntaxes=learnt_syntaxes(remote.transfer_syntaxes, learnt, held),
    )
