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
from io import BytesIO
from typing import Any

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_MOVE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.service_class import ServiceClass

from pacsnode.archive.remotes import Remotes
from pacsnode.archive.uids import UNCOMPRESSED_TRANSFER_SYNTAXES
from pacsnode.config import RemoteAE, Settings
from pacsnode.dimse.find_service import FindRequest
from pacsnode.dimse.retrieve_channel import RetrieveChannel
from pacsnode.dimse.scu import Peer, new_ae, open_association

log = logging.getLogger("pacsnode.spanning")

PENDING = (0xFF00, 0xFF01)
SUCCESS, CANCELLED = 0x0000, 0xFE00
UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
DEDUPE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_STOP_WAIT = 5.0
_POLL = 0.1

Answer = tuple[int | Dataset, Dataset | None]


def dedupe_key(answer: Dataset) -> tuple[str, ...]:
    """The 4-tuple two answers are the same entity by, from what the answer holds."""
    return tuple(str(answer.get(keyword, "") or "").strip() for keyword in DEDUPE_KEYS)


def _associate(
    settings: Settings,
    remote: RemoteAE,
    context: PresentationContext,
    extended: bytes = b"",
) -> Association:
    """An association to ``remote`` with one context, as our AE title."""
    ae = new_ae(settings.ae_title)
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    negotiation: list[Any] = []
    if extended:
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = UID(str(context.abstract_syntax))
        item.service_class_application_information = extended
        negotiation.append(item)
    peer = Peer(remote.host, remote.port, remote.ae_title, settings.ae_title)
    assoc = open_association(ae, peer, [context], ext_neg=negotiation or None)
    if not assoc.is_established:
        raise ConnectionError(f"no association with {remote.ae_title}@{remote.host}:{remote.port}")
    return assoc


def _context(model: str, syntax: str) -> PresentationContext:
    """The incoming context's abstract and transfer syntax; uncompressed ones as fallback."""
    syntaxes = [syntax, *(ts for ts in UNCOMPRESSED_TRANSFER_SYNTAXES if ts != syntax)]
    return build_context(model, syntaxes)


class RemoteSearch:
    """One C-FIND to one remote AE, run in a thread, its answers buffered."""

    def __init__(
        self,
        settings: Settings,
        remote: RemoteAE,
        identifier: Dataset,
        model: str,
        syntax: str,
        extended: bytes = b"",
    ) -> None:
        self.remote = remote
        self._settings = settings
        self._identifier = identifier
        self._context = _context(model, syntax)
        self._extended = extended
        self._answers: queue.Queue[Dataset | None] = queue.Queue()
        self._assoc: Association | None = None
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
            self._assoc = _associate(self._settings, self.remote, self._context, self._extended)
            if self._stopping.is_set():
                return
            model = str(self._context.abstract_syntax)
            for status, answer in self._assoc.send_c_find(self._identifier, model):
                if status is None or "Status" not in status:
                    log.warning("C-FIND spanning to %s: no response, skipped", title)
                    break
                code = int(status.Status)
                if code in PENDING and answer is not None:
                    found += 1
                    self._answers.put(answer)
                elif code not in (SUCCESS, CANCELLED):
                    log.warning("C-FIND spanning to %s: status %04X", title, code)
            log.info("C-FIND spanning to %s: %d answers", title, found)
        except Exception as exc:  # any failure of a remote only loses its answers
            log.warning("C-FIND spanning to %s failed, skipped: %s", title, exc)
        finally:
            self._answers.put(None)
            if self._assoc is not None and self._assoc.is_established:
                self._assoc.release()

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
        assoc = self._assoc
        if assoc is not None and assoc.is_established:
            try:
                assoc.send_c_cancel(1, query_model=str(self._context.abstract_syntax))
            except Exception as exc:  # the association went away meanwhile
                log.debug("C-CANCEL to %s not sent: %s", self.remote.ae_title, exc)
        self._thread.join(_STOP_WAIT)
        if self._thread.is_alive() and assoc is not None:
            assoc.abort()


def start_searches(
    settings: Settings,
    remotes: Remotes,
    identifier: Dataset,
    model: str,
    syntax: str,
    extended: bytes = b"",
) -> list[RemoteSearch]:
    """A running search on every ``find_spanning`` AE that is configured and offers find."""
    searches = []
    for title in settings.find_spanning:
        remote = remotes.get(title)
        if remote is None or not remote.offers_service("find"):
            log.warning("C-FIND spanning target %r is not a [[remote_ae]] offering find", title)
            continue
        search = RemoteSearch(settings, remote, identifier, model, syntax, extended)
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

    def __init__(self, settings: Settings, remotes: Remotes) -> None:
        self.settings = settings
        self.remotes = remotes

    def applies(self, calling_ae: str) -> bool:
        """Spanning is on, and the request does not come from a target (no loops)."""
        targets = {title.strip() for title in self.settings.find_spanning}
        return bool(targets) and calling_ae.strip() not in targets

    def answers(self, event: FindRequest, local: Iterator[Answer]) -> Iterator[Answer]:
        """Local answers first, then the remote ones not seen, then the local final."""
        model = str(event.request.AffectedSOPClassUID)
        context = _incoming_context(event.assoc, event.request)
        extended = event.assoc.requestor.sop_class_extended.get(UID(model), b"")
        syntax = str(context.transfer_syntax[0])
        searches = start_searches(
            self.settings, self.remotes, event.identifier, model, syntax, extended
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
        final: int | Dataset = SUCCESS
        for status, answer in local:
            code = int(status.Status) if isinstance(status, Dataset) else status
            if code in PENDING and answer is not None:
                seen.add(dedupe_key(answer))
                yield status, answer
            else:
                final = status
                break
        if final != SUCCESS:  # our search failed or was cancelled: so is the request
            yield final, None
            return
        cancel = _Sticky(lambda: bool(event.is_cancelled))
        for answer in remote_answers(searches, seen, cancel):
            yield PENDING[0], answer
        yield (CANCELLED if cancel() else SUCCESS), None


class _Sticky:
    """A cancellation check that stays true: pynetdicom's forgets a C-CANCEL once read."""

    def __init__(self, check: Callable[[], bool]) -> None:
        self._check = check
        self._seen = False

    def __call__(self) -> bool:
        self._seen = self._seen or self._check()
        return self._seen


def _incoming_context(assoc: Association, request: C_FIND | C_MOVE) -> PresentationContext:
    context_id = request._context_id
    for context in assoc.accepted_contexts:
        if context.context_id == context_id:
            return context
    raise ValueError(f"no accepted presentation context {context_id}")


# --- C-MOVE spanning ------------------------------------------------------------------


def called_ae(assoc: Association) -> str:
    """The called AE title the requestor asked for (ours is what we answered with)."""
    request = assoc.requestor.primitive
    return str(getattr(request, "called_ae_title", "") or "").strip()


def move_target(settings: Settings, remotes: Remotes, assoc: Association) -> RemoteAE | None:
    """The remote AE a C-MOVE on this association goes to, if spanning applies."""
    called = called_ae(assoc)
    if not settings.move_spanning or called == settings.ae_title.strip():
        return None
    remote = remotes.get(called)
    if remote is None or not remote.offers_service("move"):
        return None
    return remote


class _MoveRelay(RetrieveChannel):
    """Relays the responses of a forwarded C-MOVE to the requestor."""

    def send(self, status: Dataset, identifier: Dataset | None = None) -> None:
        response = C_MOVE()
        response.MessageIDBeingRespondedTo = self.request.MessageID
        response.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        response.Status = int(status.Status)
        for keyword in (
            "NumberOfRemainingSuboperations",
            "NumberOfCompletedSuboperations",
            "NumberOfFailedSuboperations",
            "NumberOfWarningSuboperations",
        ):
            if status.get(keyword) is not None:
                setattr(response, keyword, int(status.get(keyword)))
        if status.get("ErrorComment"):
            response.ErrorComment = str(status.ErrorComment)[:64]  # type: ignore[assignment]
        if identifier is not None:
            response.Identifier = BytesIO(self.encode(identifier))
        self.send_response(response)

    def fail(self, status: int, comment: str) -> None:
        failure = Dataset()
        failure.Status = status
        failure.ErrorComment = comment
        self.send(failure)


def forward_move(
    settings: Settings,
    remote: RemoteAE,
    service: ServiceClass,
    request: C_MOVE,
    context: PresentationContext,
) -> None:
    """Send the C-MOVE to ``remote`` unaltered and relay every response it gives."""
    relay = _MoveRelay(service, request, context)
    requestor = service.assoc.requestor.ae_title
    destination = str(request.MoveDestination or "").strip()
    model = str(request.AffectedSOPClassUID)
    extended = service.assoc.requestor.sop_class_extended.get(UID(model), b"")
    try:
        identifier = relay.identifier()
        assoc = _associate(settings, remote, _context(model, str(relay.syntax)), extended)
    except Exception as exc:
        log.warning("C-MOVE spanning from %s to %s failed: %s", requestor, remote.ae_title, exc)
        relay.fail(UNABLE_TO_PERFORM_SUB_OPERATIONS, f"{remote.ae_title}: {exc}")
        return
    log.info(
        "C-MOVE from %s forwarded to %s (destination %s)", requestor, remote.ae_title, destination
    )
    try:
        _relay_responses(relay, assoc, identifier, destination, model)
    finally:
        if assoc.is_established:
            assoc.release()


def _relay_responses(
    relay: _MoveRelay, assoc: Association, identifier: Dataset, destination: str, model: str
) -> None:
    cancel_sent = False
    for status, answer in assoc.send_c_move(identifier, destination, model):
        if status is None or "Status" not in status:
            break
        relay.send(status, answer)
        if int(status.Status) not in PENDING:
            return
        if relay.cancelled() and not cancel_sent:
            assoc.send_c_cancel(1, query_model=model)
            cancel_sent = True
    relay.fail(
        UNABLE_TO_PERFORM_SUB_OPERATIONS, f"no final response from {assoc.acceptor.ae_title}"
    )
