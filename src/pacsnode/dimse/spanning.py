"""Federation: C-FIND spanning and C-MOVE spanning over other archives.

C-FIND spanning sends a C-FIND, unaltered (same SOP class, identifier and transfer
syntax), to every AE in ``find_spanning`` while the local search runs. Each remote
search runs in its own thread and buffers its answers; ours go out first, then the
remote ones whose (PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID),
as far as the answer holds them, has not been sent yet. A remote that fails or does
not answer is logged and skipped: C-FIND has no warning final status, so the request
still ends in success unless our own search failed. A C-CANCEL stops the remote
searches with a C-CANCEL of their own.

C-MOVE spanning (``move_spanning``): a C-MOVE whose called AE title is a remote AE
offering "move" is sent, unaltered, to that AE, and its responses are relayed back.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from pydicom import Dataset

from pacsnode import status
from pacsnode.archive.remotes import Remotes
from pacsnode.archive.uids import UNCOMPRESSED_TRANSFER_SYNTAXES
from pacsnode.config import RemoteAE
from pacsnode.dimse import codec
from pacsnode.dimse.find import Answer, FindRequest
from pacsnode.dimse.flat import Encoded
from pacsnode.dimse.query_scu import cancel, find_identifier, move_on
from pacsnode.dimse.requests import Request
from pacsnode.dimse.scu import Dialer, connect
from pacsnode.net.association import Association, Message
from pacsnode.net.requestor import Proposal

log = logging.getLogger("pacsnode.spanning")

DEDUPE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_STOP_WAIT = 5.0
_POLL = 0.1


def dedupe_key(answer: Dataset | Encoded) -> tuple[str, ...]:
    """The 4-tuple two answers are the same entity by, from what the answer holds."""
    return tuple(str(answer.get(keyword, "") or "").strip() for keyword in DEDUPE_KEYS)


def _associate(
    dialer: Dialer, remote: RemoteAE, model: str, syntax: str, extended: bytes
) -> Association:
    """An association to ``remote`` with one context: the incoming context's abstract
    and transfer syntax, uncompressed ones as fallback."""
    syntaxes = (syntax, *(ts for ts in UNCOMPRESSED_TRANSFER_SYNTAXES if ts != syntax))
    peer = replace(dialer.peer(remote), extended={model: extended} if extended else {})
    return connect(peer, [Proposal(model, syntaxes)])


class RemoteSearch:
    """One C-FIND to one remote AE, run in a thread, its answers buffered."""

    def __init__(
        self,
        dialer: Dialer,
        remote: RemoteAE,
        identifier: Dataset,
        model: str,
        syntax: str,
        extended: bytes = b"",
    ) -> None:
        self.remote = remote
        self._dialer = dialer
        self._identifier = identifier
        self._model = model
        self._syntax = syntax
        self._extended = extended
        self._answers: queue.Queue[Dataset | None] = queue.Queue()
        self._association: Association | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"find-spanning-{remote.ae_title}", daemon=True
        )

    def start(self) -> RemoteSearch:
        self._thread.start()
        return self

    def _run(self) -> None:
        title = self.remote.ae_title
        found = 0
        try:
            self._association = _associate(
                self._dialer, self.remote, self._model, self._syntax, self._extended
            )
            if self._stopping.is_set():
                return
            for answer in find_identifier(self._association, self._model, self._identifier):
                found += 1
                self._answers.put(answer)
            log.info("C-FIND spanning to %s: %d answers", title, found)
        except Exception as exc:  # any failure of a remote only loses its answers
            log.warning("C-FIND spanning to %s failed, skipped: %s", title, exc)
        finally:
            self._answers.put(None)
            if self._association is not None:
                self._association.release()

    def answers(self, cancelled: Callable[[], bool]) -> Iterator[Dataset]:
        """The remote answers as they come; stops early once ``cancelled()``."""
        while not cancelled():
            try:
                answer = self._answers.get(timeout=_POLL)
            except queue.Empty:
                continue
            if answer is None:
                return
            yield answer

    def stop(self) -> None:
        """Cancel the remote search if it still runs (C-CANCEL, then abort)."""
        self._stopping.set()
        if not self._thread.is_alive():
            return
        association = self._association
        if association is not None and association.established:
            try:
                cancel(association, self._model)
            except ConnectionError as exc:  # the association went away meanwhile
                log.debug("C-CANCEL to %s not sent: %s", self.remote.ae_title, exc)
        self._thread.join(_STOP_WAIT)
        if self._thread.is_alive() and association is not None:
            association.abort()


def start_searches(
    dialer: Dialer,
    remotes: Remotes,
    identifier: Dataset,
    model: str,
    syntax: str,
    extended: bytes = b"",
) -> list[RemoteSearch]:
    """A running search on every ``find_spanning`` AE that is configured and offers find."""
    searches = []
    for title in dialer.settings.find_spanning:
        remote = remotes.get(title)
        if remote is None or not remote.offers_service("find"):
            log.warning("C-FIND spanning target %r is not a [[remote_ae]] offering find", title)
            continue
        search = RemoteSearch(dialer, remote, identifier, model, syntax, extended)
        searches.append(search.start())
    return searches


def remote_answers(
    searches: Iterable[RemoteSearch], seen: set[tuple[str, ...]], cancelled: Callable[[], bool]
) -> Iterator[Dataset]:
    """Each search's answers in turn, without the entities already in ``seen``."""
    for search in searches:
        for answer in search.answers(cancelled):
            key = dedupe_key(answer)
            if key in seen:
                continue
            seen.add(key)
            yield answer


class FindSpanning:
    """Wraps the local C-FIND answers with those of the ``find_spanning`` AEs."""

    def __init__(self, dialer: Dialer, remotes: Remotes) -> None:
        self.dialer = dialer
        self.settings = dialer.settings
        self.remotes = remotes

    def applies(self, calling_ae: str) -> bool:
        """Spanning is on, and the request does not come from a target (no loops)."""
        targets = {title.strip() for title in self.settings.find_spanning}
        return bool(targets) and calling_ae.strip() not in targets

    def answers(self, event: FindRequest, local: Iterator[Answer]) -> Iterator[Answer]:
        """Local answers first, then the remote ones not seen, then the local final."""
        extended = event.association.request.user.extended.get(event.model, b"")
        searches = start_searches(
            self.dialer, self.remotes, event.identifier, event.model, event.syntax, extended
        )
        try:
            yield from self._merged(event, local, searches)
        finally:
            for search in searches:
                search.stop()

    def _merged(
        self, event: FindRequest, local: Iterator[Answer], searches: list[RemoteSearch]
    ) -> Iterator[Answer]:
        seen: set[tuple[str, ...]] = set()
        final = Answer(status.SUCCESS)
        for answer in local:
            if answer.pending and answer.identifier is not None:
                seen.add(dedupe_key(answer.identifier))
                yield answer
            else:
                final = answer
                break
        if final.status != status.SUCCESS:  # our search failed or was cancelled: so is the request
            yield final
            return
        cancelled = _Sticky(event.cancelled)
        for found in remote_answers(searches, seen, cancelled):
            yield Answer(status.PENDING, found)
        yield Answer(status.CANCEL if cancelled() else status.SUCCESS)


class _Sticky:
    """A cancellation check that stays true once it was."""

    def __init__(self, check: Callable[[], bool]) -> None:
        self._check = check
        self._seen = False

    def __call__(self) -> bool:
        self._seen = self._seen or self._check()
        return self._seen


# --- C-MOVE spanning ------------------------------------------------------------------


class MoveSpanning:
    """A C-MOVE whose called AE title is a remote AE offering "move" goes to it."""

    def __init__(self, dialer: Dialer, remotes: Remotes) -> None:
        self.dialer = dialer
        self.settings = dialer.settings
        self.remotes = remotes

    def target(self, called_ae: str) -> RemoteAE | None:
        """The remote AE a C-MOVE called for goes to, if spanning applies."""
        called = called_ae.strip()
        if not self.settings.move_spanning or called == self.settings.ae_title.strip():
            return None
        remote = self.remotes.get(called)
        if remote is None or not remote.offers_service("move"):
            return None
        return remote

    def forward(self, request: Request) -> bool:
        """Send the C-MOVE to its target unaltered and relay every response; False
        when spanning does not apply to it."""
        remote = self.target(request.association.called_ae)
        if remote is None:
            return False
        requestor = request.session.calling_ae
        destination = str(request.command.get("MoveDestination", "")).strip()
        model = request.sop_class
        extended = request.association.request.user.extended.get(model, b"")
        try:
            identifier = request.dataset()
            association = _associate(self.dialer, remote, model, request.syntax, extended)
        except (ConnectionError, codec.DecodeError) as exc:
            log.warning("C-MOVE spanning from %s to %s failed: %s", requestor, remote.ae_title, exc)
            request.respond(status.UNABLE_TO_PERFORM_SUB_OPERATIONS, f"{remote.ae_title}: {exc}")
            return True
        log.info(
            "C-MOVE from %s forwarded to %s (destination %s)",
            requestor,
            remote.ae_title,
            destination,
        )
        relay = _Relay(request, association, model)
        try:
            move_on(association, model, identifier, destination, on_response=relay)
        except ConnectionError as exc:
            request.respond(
                status.UNABLE_TO_PERFORM_SUB_OPERATIONS,
                f"no final response from {remote.ae_title}: {exc}",
            )
        finally:
            association.release()
        return True


_COUNTS = (
    "NumberOfRemainingSuboperations",
    "NumberOfCompletedSuboperations",
    "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations",
)


class _Relay:
    """Relays a forwarded C-MOVE's responses, and a C-CANCEL the other way."""

    def __init__(self, request: Request, association: Association, model: str) -> None:
        self.request = request
        self.association = association
        self.model = model
        self.cancel_sent = False

    def __call__(self, response: Message) -> None:
        command = response.command
        counts = {key: command[key] for key in _COUNTS if key in command}
        data = None
        if response.data:
            found = codec.decode(response.data, response.context.transfer_syntax)
            data = self.request.encode(found)
        code = int(command.get("Status", -1))
        self.request.respond(code, str(command.get("ErrorComment", "")), data, **counts)
        pending = status.category(code) is status.Category.PENDING
        if pending and not self.cancel_sent and self.request.cancelled():
            cancel(self.association, self.model)
            self.cancel_sent = True
